"""Points 11-12: verify-reload catches mismatches; bad input fails clearly, writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from tensorflow.core.protobuf import saved_model_pb2

import export_core
from export_core.artifacts.golden import read_golden
from export_core.steps.verify import inputs_from_saved_model as verify_inputs
from export_core.steps.verify import verify_reload
from tests import models
from tests.models import EagerOnlyScale


def test_mismatch_raises_and_publishes_nothing(tmp_path):
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, EagerOnlyScale()(inputs))
    with pytest.raises(export_core.VerificationError, match="differs from the in-memory model"):
        export_core.export_saved_model(model, str(tmp_path), serving_only=True)
    assert os.listdir(tmp_path) == [], "no version, no staging folder left behind"


def test_verify_uses_golden_inputs_when_given(tmp_path):
    model = models.functional_regressor()
    golden = {"features": np.full((5, 3), 0.5, "float32")}
    result = export_core.run_export(model, str(tmp_path), sample_inputs=golden)
    assert result.parity.samples == 5 and not result.parity.synthesized
    assert set(result.parity.loaders) == {"tf1:serve", "tf2:serve", "tf1:train", "tf1:eval"}
    assert result.parity.max_abs_diff <= 1e-5


def test_synthesized_samples_are_fewer_for_image_sized_inputs(tmp_path):
    """Four examples of small inputs, two of image-sized ones (each loader holds the
    activations of all of them at once); both are written as the version's golden set."""
    small = export_core.run_export(models.functional_regressor(), str(tmp_path / "small"))
    assert small.parity.samples == 4 and small.parity.synthesized
    inputs = keras.Input((160, 160, 3), name="image")  # 76,800 elements per example
    x = keras.layers.Conv2D(4, 3, strides=4)(inputs)
    image = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    image.compile("sgd", "mse")
    result = export_core.run_export(image, str(tmp_path / "image"))
    assert result.parity.samples == 2 and result.parity.synthesized
    assert result.parity.max_abs_diff <= 1e-5
    golden = read_golden(result.path)
    assert [v.shape[0] for v in (*golden.inputs.values(), *golden.outputs.values())] == [2, 2]


def test_full_verification_loads_every_metagraph_with_both_loaders(tmp_path):
    result = export_core.run_export(models.functional_regressor(), str(tmp_path), verify="full")
    assert set(result.parity.loaders) == {
        f"{k}:{t}" for k in ("tf1", "tf2") for t in ("serve", "train", "eval")
    }


def test_verify_fails_when_a_training_metagraph_cannot_restore(tmp_path):
    """Train and eval graphs are loaded and restored too, not only the serving one."""
    path = export_core.export_saved_model(models.functional_regressor(), str(tmp_path))
    proto_path = os.path.join(path, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(proto_path, "rb") as f:
        proto.ParseFromString(f.read())
    proto.meta_graphs[1].saver_def.restore_op_name = "no/such/op"
    with open(proto_path, "wb") as f:
        f.write(proto.SerializeToString())
    plan_inputs = verify_inputs(path)
    with pytest.raises(export_core.VerificationError, match="'train' MetaGraph .* TF1 session"):
        verify_reload(path, None, plan_inputs, ("serve", "train", "eval"))


def test_verify_level_is_checked(tmp_path):
    with pytest.raises(export_core.ExportValidationError, match="verify"):
        export_core.run_export(models.functional_regressor(), str(tmp_path), verify="deep")
    assert os.listdir(tmp_path) == []


def test_verify_rejects_a_savedmodel_of_another_model(tmp_path):
    path = export_core.export_saved_model(models.functional_regressor(), str(tmp_path))
    other = models.functional_regressor()  # different random weights
    plan_inputs = export_core.steps.validate.validate_export(other, str(tmp_path / "x")).inputs
    with pytest.raises(export_core.VerificationError, match="max \\|diff\\|"):
        verify_reload(path, other, plan_inputs, ("serve",))


def test_non_keras_object_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Expected a keras.Model, received dict"):
        export_core.export_saved_model({"not": "a model"}, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(tmp_path, bad):
    model = models.functional_regressor()
    kernel = model.get_layer("hidden").kernel
    kernel.assign(np.where(np.eye(3, 5) > 0, bad, kernel.numpy()))
    with pytest.raises(ValueError, match="'hidden/kernel' holds 3 non-finite"):
        export_core.export_saved_model(model, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_missing_custom_object_is_named_with_the_fix(tmp_path):
    def swish6(x):
        return keras.ops.minimum(x * keras.ops.sigmoid(x), 6.0)

    inputs = keras.Input((1,), name="x")
    model = keras.Model(inputs, keras.layers.Activation(swish6)(inputs))
    model.compile("sgd", "mse")
    with pytest.raises(export_core.CustomObjectError, match="swish6.*custom_objects"):
        export_core.export_saved_model(model, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("custom_objects", [["relu6"], {"relu6": "relu6"}, {3: abs}])
def test_malformed_custom_objects_are_rejected(tmp_path, custom_objects):
    with pytest.raises(export_core.CustomObjectError, match="custom_objects"):
        export_core.export_saved_model(
            models.functional_regressor(), str(tmp_path / "out"), custom_objects=custom_objects
        )
    assert not (tmp_path / "out").exists()


def test_scheme_without_backend_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match="nosuchfs.*fsspec backend"):
        export_core.export_saved_model(models.functional_regressor(), "nosuchfs://bucket/model")


def test_malformed_input_signature_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="tf.TensorSpec"):
        export_core.export_saved_model(
            models.functional_regressor(), str(tmp_path / "out"), input_signature=[(None, 3)]
        )
    assert not (tmp_path / "out").exists()


def test_errors_pickle_for_prefect():
    import pickle

    for error in (
        export_core.VersionExistsError("taken"),
        export_core.VerificationError("mismatch"),
        export_core.CustomObjectError("missing"),
    ):
        clone = pickle.loads(pickle.dumps(error))
        assert type(clone) is type(error) and str(clone) == str(error)


def test_export_core_never_imports_prefect():
    code = "import sys, export_core; assert 'prefect' not in sys.modules, 'prefect imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
