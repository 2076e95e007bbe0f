"""Verification checks train and eval against Keras's own steps, on the user's model."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

import export_core
from export_core.errors import VerificationError
from export_core.steps import trace, training_check
from tests import models
from tests.helpers import version_folders


def dropout_model() -> keras.Model:
    inputs = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    hidden = keras.layers.Dropout(0.5, name="drop")(hidden)
    outputs = keras.layers.Dense(2, name="prediction")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.01), "mse", metrics=["mae"])
    model.train_on_batch(*models.regression_batch())
    return model


def state(model: keras.Model) -> list[np.ndarray]:
    variables = list(model.variables) + list(model.optimizer.variables)
    variables += [v for m in model.metrics for v in m.variables]
    return [keras.ops.convert_to_numpy(v.value).copy() for v in variables]


def test_every_export_compares_train_and_eval_with_keras_and_records_it(tmp_path):
    model = dropout_model()
    result = export_core.run_export(model, str(tmp_path / "reg"))
    training = result.parity.training
    assert training["compared"] == ["eval", "train"] and training["skipped"] is None
    assert training["train_max_abs_diff"] <= result.parity.tolerance
    with open(os.path.join(result.path, "export_manifest.json"), encoding="utf-8") as handle:
        recorded = json.load(handle)["parity"]["training"]
    assert recorded["compared"] == ["eval", "train"]


def test_the_check_never_touches_the_callers_model_or_optimizer(tmp_path):
    model = dropout_model()
    before = state(model)
    export_core.run_export(model, str(tmp_path / "reg"))
    after = state(model)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def _train_step_without_update(original):
    def step(model, training, names, x, y):
        return original(model, False, names, x, y)  # the train graph runs test_step

    return step


def _eval_step_in_training_mode(original):
    def step(model, training, names, x, y):
        if training:
            return original(model, True, names, x, y)
        # eval with dropout on and no update: what a wrong training flag does
        outputs = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=outputs, training=False)
        results = model.compute_metrics(x, y, outputs)
        out = {"loss": loss, "predictions/prediction": outputs}
        out.update({f"metrics/{k}/value": v for k, v in results.items() if k != "loss"})
        out.update({f"metrics/{k}/update_op": v for k, v in results.items() if k != "loss"})
        return out

    return step


def _train_step_with_scaled_loss(original):
    def step(model, training, names, x, y):
        if not training:
            return original(model, training, names, x, y)
        compute = model.compute_loss

        def scaled(*args, **kwargs):
            return compute(*args, **kwargs) * 1.5  # gradients half as big again

        object.__setattr__(model, "compute_loss", scaled)
        try:
            return original(model, training, names, x, y)
        finally:
            object.__delattr__(model, "compute_loss")

    return step


BROKEN = {
    "train graph applies no step": _train_step_without_update,
    "eval graph runs in training mode": _eval_step_in_training_mode,
    "train graph scales the loss": _train_step_with_scaled_loss,
}


@pytest.mark.parametrize("entry", ["run_export", "export_saved_model"])
@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_wrong_train_or_eval_graph_is_caught_and_nothing_is_published(
    tmp_path, monkeypatch, broken, entry
):
    model = dropout_model()
    monkeypatch.setattr(trace, "_keras_step", BROKEN[broken](trace._keras_step))
    base = tmp_path / "reg"
    export = getattr(export_core, entry)
    with pytest.raises(VerificationError, match="differs from Keras|does not output"):
        export(model, str(base))
    assert version_folders(base) == []
    assert not base.exists() or [p.name for p in base.iterdir()] == []


def test_models_over_the_size_limit_are_checked_with_full_verification(tmp_path, monkeypatch):
    monkeypatch.setattr(training_check, "DEFAULT_MAX_PARAMETERS", 10)
    model = dropout_model()
    default = export_core.run_export(model, str(tmp_path / "a"))
    assert default.parity.training["compared"] == []
    assert "full verification" in default.parity.training["skipped"]
    full = export_core.run_export(model, str(tmp_path / "b"), verify="full")
    assert full.parity.training["compared"] == ["eval", "train"]


def test_serving_only_and_unverified_exports_run_no_training_check(tmp_path):
    model = dropout_model()
    serving = export_core.run_export(model, str(tmp_path / "a"), modes=("serve",))
    assert serving.parity.training["skipped"] == "no train or eval MetaGraph"
    unverified = export_core.run_export(model, str(tmp_path / "b"), verify=False)
    assert unverified.parity is None


@keras.saving.register_keras_serializable(package="tests")
class UnseededNoise(keras.layers.Layer):
    """Noise drawn outside Keras's seed generators (here when the step is traced):
    no two traces of the same step draw the same."""

    def call(self, inputs, training=False):
        if training:
            return inputs + float(np.random.default_rng().uniform())
        return inputs


def test_a_step_keras_itself_cannot_repeat_is_recorded_not_failed(tmp_path):
    inputs = keras.Input((3,), name="features")
    hidden = UnseededNoise(name="noise")(keras.layers.Dense(4, name="hidden")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="prediction")(hidden))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.train_on_batch(*models.regression_batch())
    result = export_core.run_export(model, str(tmp_path / "reg"))
    training = result.parity.training
    assert training["compared"] == ["eval"]
    assert "not seeded" in training["not_comparable"]
