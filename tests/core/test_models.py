"""Points 7-9: untouched models, every model kind, input signatures."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.testing import assert_allclose

import export_core
from tests import models
from tests.helpers import ROOT
from tests.models import tf1_load, tf1_run


def snapshot(model: keras.Model) -> dict:
    state = {
        "weights": [np.array(v.numpy()) for v in model.variables],
        "n_variables": len(model.variables),
    }
    if getattr(model, "optimizer", None) is not None:
        state["optimizer"] = [np.array(v.numpy()) for v in model.optimizer.variables]
        state["iterations"] = int(model.optimizer.iterations.numpy())
    return state


def assert_same_state(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    assert before["n_variables"] == after["n_variables"]
    for key in ("weights", "optimizer"):
        for a, b in zip(before.get(key, []), after.get(key, []), strict=True):
            np.testing.assert_array_equal(a, b)
    assert before.get("iterations") == after.get("iterations")


@pytest.mark.parametrize("trained", [False, True])
def test_export_leaves_the_model_untouched(tmp_path, trained):
    model = models.functional_regressor(dropout=0.5)
    x, y = models.regression_batch()
    if trained:
        model.train_on_batch(x, y)
    before = snapshot(model)
    n_opt = len(model.optimizer.variables)
    export_core.export_saved_model(model, str(tmp_path))
    assert_same_state(before, snapshot(model))
    assert len(model.optimizer.variables) == n_opt, "no optimizer slots created on the model"


def test_sequential_model_exports_all_modes(tmp_path):
    model = models.sequential_classifier()
    x = np.random.default_rng(1).standard_normal((5, 4)).astype("float32")
    labels = np.array([0, 2, 1, 1, 0])
    model.train_on_batch(x, labels)
    path = export_core.export_saved_model(model, str(tmp_path))
    assert_allclose(
        models.tf1_predict(path, {"pixels": x})["probs"], model.predict(x, verbose=0), atol=1e-5
    )
    sess, meta_graph = tf1_load(path, "eval")
    with sess:
        signature = meta_graph.signature_def["eval"]
        assert signature.inputs["probs_target"].tensor_shape.dim[0].size == -1
        assert len(signature.inputs["probs_target"].tensor_shape.dim) == 1  # sparse labels
        got = tf1_run(sess, meta_graph, "eval", {"pixels": x, "probs_target": labels})
    expected = model.evaluate(x, labels, verbose=0, return_dict=True)
    assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    assert_allclose(got["metrics/accuracy/value"], expected["accuracy"], rtol=1e-6)


def test_multi_input_multi_output_model(tmp_path):
    model = models.multi_io_model()
    rng = np.random.default_rng(2)
    left, right = rng.standard_normal((4, 2)), rng.standard_normal((4, 3))
    left, right = left.astype("float32"), right.astype("float32")
    score, label = rng.standard_normal((4, 1)).astype("float32"), np.eye(2)[[0, 1, 1, 0]]
    label = label.astype("float32")
    model.train_on_batch([left, right], [score, label])
    path = export_core.export_saved_model(model, str(tmp_path))
    served = models.tf1_predict(path, {"left": left, "right": right})
    expected = model.predict([left, right], verbose=0)
    assert_allclose(served["score"], expected[0], atol=1e-5)
    assert_allclose(served["label"], expected[1], atol=1e-5)
    sess, meta_graph = tf1_load(path, "eval")
    feeds = {"left": left, "right": right, "score_target": score, "label_target": label}
    with sess:
        got = tf1_run(sess, meta_graph, "eval", feeds)
    want = model.evaluate([left, right], [score, label], verbose=0, return_dict=True)
    assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    assert {"predictions/score", "predictions/label"} <= set(got)
    for name, value in want.items():
        if name != "loss":
            assert_allclose(got[f"metrics/{name}/value"], value, rtol=1e-5, err_msg=name)


def test_dict_input_model(tmp_path):
    model = models.dict_input_model()
    feeds = {"age": np.array([[30.0], [50.0]], "float32"), "income": np.ones((2, 1), "float32")}
    path = export_core.export_saved_model(model, str(tmp_path))
    assert_allclose(
        models.tf1_predict(path, feeds)["risk"], model.predict(feeds, verbose=0), atol=1e-5
    )
    sess, meta_graph = tf1_load(path, "train")
    with sess:
        assert set(meta_graph.signature_def["train"].inputs) == {"age", "income", "risk_target"}


def relu6(x):
    return keras.ops.relu6(x)


def test_custom_activation_via_custom_objects(tmp_path):
    inputs = keras.Input((1,), name="x")
    outputs = keras.layers.Activation(relu6, name="act")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    path = export_core.export_saved_model(model, str(tmp_path), custom_objects={"relu6": relu6})
    served = models.tf1_predict(path, {"x": np.array([[7.0], [-3.0], [4.0]], "float32")})
    np.testing.assert_array_equal(served["act"], [[6.0], [0.0], [4.0]])
    loaded = export_core.load_from_saved_model(path, custom_objects={"relu6": relu6})
    np.testing.assert_array_equal(
        loaded.predict(np.array([[7.0], [-3.0], [4.0]]), verbose=0), [[6.0], [0.0], [4.0]]
    )


def test_subclassed_without_get_config_refuses_before_writing(tmp_path, batch):
    model = models.PlainSubclass()
    model(batch)
    model.compile("sgd", "mse")
    target = tmp_path / "never"
    with pytest.raises(NotImplementedError, match="serving_only=True"):
        export_core.export_saved_model(model, str(target))
    assert not target.exists()


def test_subclassed_model_is_checked_before_anything_else(tmp_path):
    model = models.PlainSubclass()  # never called, and a bad path: the subclass check wins
    with pytest.raises(NotImplementedError, match="serving_only=True"):
        export_core.export_saved_model(model, "nosuchscheme://x/y")


def test_subclassed_serving_only_always_works(tmp_path, batch):
    model = models.PlainSubclass()
    expected = model(batch).numpy()
    path = export_core.export_saved_model(model, str(tmp_path), serving_only=True)
    served = models.tf1_predict(path, {"inputs": batch})["output_0"]
    assert_allclose(served, expected, atol=1e-5)
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    assert_allclose(layer(batch)["output_0"], expected, atol=1e-5)


def test_subclassed_with_get_config_exports_all_modes(tmp_path, batch):
    model = models.ConfiguredSubclass(units=3)
    model.compile(keras.optimizers.Adam(0.01), "mse", metrics=["mae"])
    y = np.ones((batch.shape[0], 1), "float32")
    model.train_on_batch(batch, y)
    path = export_core.export_saved_model(model, str(tmp_path))
    assert_allclose(
        models.tf1_predict(path, {"inputs": batch})["output_0"],
        model.predict(batch, verbose=0),
        atol=1e-5,
    )
    sess, meta_graph = tf1_load(path, "eval")
    with sess:
        got = tf1_run(sess, meta_graph, "eval", {"inputs": batch, "output_0_target": y})
        assert sess.run(tf.compat.v1.train.get_global_step(sess.graph)) == 1
    want = model.evaluate(batch, y, verbose=0, return_dict=True)
    assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    assert_allclose(got["metrics/mae/value"], want["mae"], rtol=1e-5)
    reloaded = export_core.load_from_saved_model(path)
    assert_allclose(reloaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_unbuilt_sequential_is_built_from_a_5d_signature(tmp_path):
    model = keras.Sequential([keras.layers.Dense(3, name="dense_out")])
    spec = tf.TensorSpec((10, 11, 12, 13, 14), tf.float32, name="spec_input")
    path = export_core.export_saved_model(model, str(tmp_path), input_signature=spec)
    sess, meta_graph = tf1_load(path, "serve")
    with sess:
        signature = meta_graph.signature_def["serving_default"]
        (inp,) = signature.inputs.values()
        (out,) = signature.outputs.values()
        assert len(inp.tensor_shape.dim) == 5 and len(out.tensor_shape.dim) == 5
        assert out.tensor_shape.dim[-1].size == 3
        x = np.ones((10, 11, 12, 13, 14), "float32")
        got = tf1_run(sess, meta_graph, "serving_default", {"spec_input": x})
    assert_allclose(got["dense_out"], model.predict(x, verbose=0), atol=1e-5)


def test_input_signature_overrides_the_model_inputs(tmp_path, batch):
    model = models.functional_regressor()
    spec = [tf.TensorSpec((None, 3), tf.float32, name="renamed")]
    path = export_core.export_saved_model(model, str(tmp_path), input_signature=spec)
    assert_allclose(
        models.tf1_predict(path, {"renamed": batch})["prediction"],
        model.predict(batch, verbose=0),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "make",
    [lambda: keras.Sequential([keras.layers.Dense(2)]), models.PlainSubclass],
    ids=["unbuilt-sequential", "never-called-subclass"],
)
def test_uninferable_signature_asks_to_build_or_pass_one(tmp_path, make):
    target = tmp_path / "out"
    with pytest.raises(ValueError, match="input_signature"):
        export_core.export_saved_model(make(), str(target), serving_only=True)
    assert not target.exists()


@keras.saving.register_keras_serializable(package="tests")
class OrthogonalOnly(keras.layers.Dense):
    """A layer that refuses any kernel initializer but an orthogonal one."""

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        if not isinstance(self.kernel_initializer, keras.initializers.Orthogonal):
            raise ValueError("OrthogonalOnly needs kernel_initializer='orthogonal'")


CLONE_PEAK = """
import sys
import numpy as np, keras
import export_core
from export_core.steps.clone import clone_for_mode
from export_core.steps.validate import validate_export

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

inputs = keras.Input((2000,), name="x")
model = keras.Model(inputs, keras.layers.Dense(5000, name="y")(inputs))  # 40 MB of weights
model.compile(keras.optimizers.Adam(1e-3), "mse")
model.fit(np.ones((8, 2000), "float32"), np.ones((8, 5000), "float32"), verbose=0)
plan = validate_export(model, sys.argv[1])
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets the peak resident set size (VmHWM)
before = status("VmRSS:")
clone = clone_for_mode(model, plan, "train")
print(status("VmHWM:") - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_cloning_a_trained_model_allocates_no_optimizer_slots(tmp_path):
    """A trained model's clone takes its Adam moments: nothing is allocated for them
    (it filled zeros as large as the slots, twice the weights, then copied them). The
    clone's weights start as zeros (see clone._clone_with_zero_init), once.

    Measured as the process's peak resident memory while cloning, in a process of its
    own with oneDNN's pooling allocator off (``TF_ENABLE_ONEDNN_OPTS=0``: freed tensors
    go back to the system, so what an allocation takes shows), on any TensorFlow build.
    """
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = ROOT
    run = subprocess.run(
        [sys.executable, "-c", CLONE_PEAK, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    grown = int(run.stdout.strip().splitlines()[-1])
    weight_bytes = 4 * (2000 * 5000 + 5000)
    # The clone's zeros: once the weights. With the slots allocated: twice as much.
    assert grown < weight_bytes * 3 // 2, f"cloning took {grown / 2**20:.0f} MB"


def test_a_trained_models_clone_shares_its_optimizer_state(tmp_path):
    from export_core.steps.clone import clone_for_mode
    from export_core.steps.validate import validate_export

    inputs = keras.Input((100,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(100, name="y")(inputs))
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.fit(np.ones((8, 100), "float32"), np.ones((8, 100), "float32"), verbose=0)
    plan = validate_export(model, str(tmp_path))
    train = clone_for_mode(model, plan, "train")
    assert train.optimizer.iterations.numpy() == 1
    for mine, theirs in zip(train.optimizer.variables, model.optimizer.variables, strict=True):
        assert mine.value is theirs.value  # the model's own variables, shared
    path = export_core.export_saved_model(model, str(tmp_path / "out"))
    got = models.tf1_predict(path, {"x": np.ones((2, 100), "float32")})["y"]
    assert_allclose(got, model.predict(np.ones((2, 100), "float32"), verbose=0), atol=1e-5)


@keras.saving.register_keras_serializable(package="tests")
class ValueInBuildAdam(keras.optimizers.Adam):
    """Creates a variable from a value in build(): it cannot be deferred."""

    def build(self, variables):
        super().build(variables)
        self.steps_seen = keras.Variable(0.0, trainable=False, name="steps_seen")


def test_an_optimizer_whose_build_needs_values_is_cloned_the_normal_way(tmp_path):
    from export_core.steps.clone import clone_for_mode
    from export_core.steps.validate import validate_export

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="y")(inputs))
    model.compile(ValueInBuildAdam(1e-2), "mse")
    model.fit(np.ones((4, 3), "float32"), np.ones((4, 2), "float32"), verbose=0)
    train = clone_for_mode(model, validate_export(model, str(tmp_path)), "train")
    assert train.optimizer.iterations.numpy() == 1
    momentum = [v for v in train.optimizer.variables if "momentum" in v.path][0]
    source = [v for v in model.optimizer.variables if "momentum" in v.path][0]
    assert_allclose(momentum.numpy(), source.numpy())
    assert np.any(source.numpy())  # a real, trained slot
    path = export_core.export_saved_model(model, str(tmp_path / "out"))
    got = models.tf1_predict(path, {"x": np.ones((2, 3), "float32")})["y"]
    assert_allclose(got, model.predict(np.ones((2, 3), "float32"), verbose=0), atol=1e-5)


def test_clones_skip_random_initialisation_but_fall_back_when_a_layer_objects(tmp_path, batch):
    """Clones are rebuilt with zero initializers (the weights are copied in anyway)."""
    from export_core.steps import clone

    plain = models.functional_regressor()
    fast = clone._clone_with_zero_init(plain)
    assert fast is not None
    assert all(not np.any(w.numpy()) for w in fast.weights)

    inputs = keras.Input((3,), name="x")
    picky = keras.Model(
        inputs, OrthogonalOnly(2, kernel_initializer="orthogonal", name="y")(inputs)
    )
    picky.compile("adam", "mse")
    assert clone._clone_with_zero_init(picky) is None
    path = export_core.export_saved_model(picky, str(tmp_path))
    got = models.tf1_predict(path, {"x": batch})["y"]
    assert_allclose(got, picky.predict(batch, verbose=0), atol=1e-5)
