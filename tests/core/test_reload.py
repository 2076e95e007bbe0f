"""Point 10: load_from_saved_model rebuilds the Keras model (and its training state)."""

from __future__ import annotations

import keras
import pytest
from numpy.testing import assert_allclose

import export_core
from tests import models


def test_reload_rebuilds_an_uncompiled_model_with_the_weights(trained_functional, batch):
    model, path, _, _ = trained_functional
    loaded = export_core.load_from_saved_model(path)
    assert not loaded.compiled
    assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_reload_with_compile_resumes_training_identically(tmp_path):
    model = models.functional_regressor()
    x, y = models.regression_batch()
    for _ in range(3):
        model.train_on_batch(x, y)
    path = export_core.export_saved_model(model, str(tmp_path))
    loaded = export_core.load_from_saved_model(path, compile=True)
    assert int(loaded.optimizer.iterations.numpy()) == 3
    # One more step on each: same loss, same new weights, only if the Adam moments
    # and iteration count came back (fresh slots would move differently).
    loss_loaded = loaded.train_on_batch(x, y, return_dict=True)["loss"]
    loss_original = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert_allclose(loss_loaded, loss_original, rtol=1e-6)
    for a, b in zip(loaded.weights, model.weights, strict=True):
        assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_reload_refuses_unsafe_config_unless_opted_out(tmp_path, batch):
    inputs = keras.Input((3,), name="x")
    outputs = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    model = keras.Model(inputs, outputs)
    path = export_core.export_saved_model(model, str(tmp_path))
    with pytest.raises(ValueError, match="safe_mode"):
        export_core.load_from_saved_model(path)
    loaded = export_core.load_from_saved_model(path, safe_mode=False)
    assert_allclose(loaded.predict(batch, verbose=0), batch * 2.0, atol=1e-6)


def test_reload_without_custom_object_names_it(tmp_path):
    def capped_relu(x):  # not a Keras built-in name, unlike relu6
        return keras.ops.minimum(keras.ops.relu(x), 6.0)

    inputs = keras.Input((1,), name="x")
    model = keras.Model(inputs, keras.layers.Activation(capped_relu)(inputs))
    custom = {"capped_relu": capped_relu}
    path = export_core.export_saved_model(model, str(tmp_path), custom_objects=custom)
    with pytest.raises(export_core.CustomObjectError, match="capped_relu"):
        export_core.load_from_saved_model(path)


def test_export_and_reload_through_an_fsspec_uri(batch):
    import fsspec

    fsspec.filesystem("memory").store.clear()
    model = models.functional_regressor()
    path = export_core.export_saved_model(model, "memory://registry/regressor")
    assert path.startswith("memory://registry/regressor/")
    version = path.rsplit("/", 1)[-1]
    assert version.isdigit()
    fs = fsspec.filesystem("memory")
    listing = [p.rsplit("/", 1)[-1] for p in fs.ls("/registry/regressor", detail=False)]
    assert listing == [version], "staging and claims are removed after publishing"
    loaded = export_core.load_from_saved_model(path)
    assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
