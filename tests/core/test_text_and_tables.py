"""Models with lookup tables, vocabularies, string inputs, adapted state, custom steps."""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.testing import assert_allclose

import export_core
from export_core import UnsupportedModelError
from export_core.artifacts.golden import read_golden
from tests import text_models as tm
from tests.models import tf1_load, tf1_run


def keras_reference(model: keras.Model, folder) -> keras.Model:
    """An independent copy (weights, adapted state, optimizer) through the .keras format."""
    path = os.path.join(str(folder), "reference.keras")
    model.save(path)
    return keras.saving.load_model(path)


def tensors(x):
    """Keras's fit/predict take string batches as tensors, not numpy object arrays."""
    return tf.nest.map_structure(tf.constant, x)


def moved(path: str, folder) -> str:
    target = os.path.join(str(folder), "moved-export")
    shutil.move(path, target)
    return target


def tf2_predict(path: str, feeds: dict) -> dict:
    loaded = tf.saved_model.load(path, tags=["serve"])
    out = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in out.items()}


def tf1_step(path: str, tag: str, feeds: dict, calls: int = 1) -> list[dict]:
    key = "serving_default" if tag == "serve" else tag
    sess, meta_graph = tf1_load(path, tag)
    with sess:
        return [tf1_run(sess, meta_graph, key, feeds) for _ in range(calls)]


@pytest.fixture(params=["adapted", "vocabulary_file"])
def text_export(request, tmp_path):
    vocabulary = None
    if request.param == "vocabulary_file":
        vocabulary = tm.write_vocabulary(str(tmp_path / "vocab.txt"))
    model = tm.text_classifier(vocabulary)
    model.fit(tf.constant(tm.SENTENCES), tm.LABELS, epochs=2, verbose=0)
    reference = keras_reference(model, tmp_path)
    path = export_core.export_saved_model(model, str(tmp_path / "registry"))
    if vocabulary is not None:
        os.remove(vocabulary)  # the export must carry its own copy
    return request.param, model, reference, moved(path, tmp_path)


def test_text_classifier_exports_every_mode_and_loads_after_moving(text_export):
    kind, model, reference, path = text_export
    x, y = tm.SENTENCES, tm.LABELS
    expected = model.predict(tf.constant(x), verbose=0)
    assert_allclose(tf1_step(path, "serve", {"text": x})[0]["score"], expected, atol=1e-5)
    assert_allclose(tf2_predict(path, {"text": x})["score"], expected, atol=1e-5)

    want_eval = reference.evaluate(tf.constant(x), y, verbose=0, return_dict=True)
    got_eval = tf1_step(path, "eval", {"text": x, "score_target": y})[0]
    assert_allclose(got_eval["loss"], want_eval["loss"], rtol=1e-5, atol=1e-6)
    assert_allclose(got_eval["metrics/accuracy/value"], want_eval["accuracy"], atol=1e-6)

    first, second = tf1_step(path, "train", {"text": x, "score_target": y}, calls=2)
    want_first = reference.train_on_batch(tf.constant(x), y, return_dict=True)["loss"]
    assert_allclose(first["loss"], want_first, rtol=1e-5, atol=1e-6)
    after = reference.predict(tf.constant(x), verbose=0)
    assert_allclose(second["predictions/score"], after, atol=1e-5)
    assets = os.listdir(os.path.join(path, "assets"))
    assert ("vocab.txt" in assets) == (kind == "vocabulary_file"), assets


def test_golden_data_keeps_strings_exactly_without_pickle(text_export):
    _, model, _, path = text_export
    with np.load(os.path.join(path, "golden.npz"), allow_pickle=False) as data:
        assert "inputs/text.bytes" in data.files
    golden = read_golden(path)
    texts = golden.inputs["text"]
    assert texts.dtype == object and all(isinstance(t, bytes) for t in texts)
    expected = model.predict(tf.constant(texts), verbose=0)
    assert_allclose(golden.outputs["score"], expected, atol=1e-6)


def test_tabular_lookups_normalization_and_bins_match_keras_in_every_mode(tmp_path):
    model = tm.tabular_model()
    x, y = tm.tabular_batch()
    model.fit(tensors(x), y, epochs=1, verbose=0)
    reference = keras_reference(model, tmp_path)
    path = moved(export_core.export_saved_model(model, str(tmp_path / "registry")), tmp_path)

    expected = model.predict(tensors(x), verbose=0)
    assert_allclose(tf1_step(path, "serve", x)[0]["price"], expected, atol=1e-5)
    assert_allclose(tf2_predict(path, x)["price"], expected, atol=1e-5)
    feeds = {**x, "price_target": y}
    want_eval = reference.evaluate(tensors(x), y, verbose=0, return_dict=True)
    got_eval = tf1_step(path, "eval", feeds)[0]
    assert_allclose(got_eval["loss"], want_eval["loss"], rtol=1e-5)
    assert_allclose(got_eval["metrics/mae/value"], want_eval["mae"], rtol=1e-5)
    first, second = tf1_step(path, "train", feeds, calls=2)
    want_first = reference.train_on_batch(tensors(x), y, return_dict=True)["loss"]
    assert_allclose(first["loss"], want_first, rtol=1e-5, atol=1e-5)
    after = reference.predict(tensors(x), verbose=0)
    assert_allclose(second["predictions/price"], after, atol=1e-5)


def test_adapted_normalization_clone_carries_mean_and_variance(tmp_path):
    inputs = keras.Input((2,), name="x")
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(np.array([[1.0, 200.0], [3.0, 1000.0], [5.0, 600.0]], "float32"))
    model = keras.Model(inputs, keras.layers.Dense(1, name="y")(norm(inputs)))
    model.compile("adam", "mse")
    result = export_core.run_export(model, str(tmp_path / "r"))
    assert result.parity.max_abs_diff < 1e-5
    x = np.array([[2.0, 400.0]], "float32")
    assert_allclose(tf1_step(result.path, "serve", {"x": x})[0]["y"], model.predict(x, verbose=0))


def test_overridden_train_step_is_the_one_the_train_graph_runs(tmp_path):
    model = tm.custom_step_model()
    x = np.random.default_rng(1).standard_normal((8, 3)).astype("float32")
    y = np.random.default_rng(2).standard_normal((8, 2)).astype("float32")
    model.fit(x, y, epochs=2, verbose=0)
    reference = keras_reference(model, tmp_path)
    path = export_core.export_saved_model(model, str(tmp_path / "r"))

    feeds = {"features": x, "prediction_target": y}
    first, second = tf1_step(path, "train", feeds, calls=2)
    reference.l1_tracker.reset_state()  # the export starts metrics from zero, as fit() does
    data = (tf.constant(x), tf.constant(y))
    want_eval = reference.test_step(data)["loss"]
    eager = [reference.train_step(data) for _ in range(2)]
    assert set(first) == {"loss", "metrics/l1/value", "metrics/l1/update_op"}
    for got, want in zip((first, second), eager, strict=True):
        assert_allclose(got["loss"], want["loss"], rtol=1e-5, atol=1e-6)
        assert_allclose(got["metrics/l1/value"], want["l1"], rtol=1e-5, atol=1e-6)
    default_mse = reference.compute_loss(x=None, y=y, y_pred=reference(x))
    assert not np.allclose(first["loss"], default_mse)  # not Keras's default step
    evaluated = tf1_step(path, "eval", feeds)[0]
    assert_allclose(evaluated["loss"], want_eval, rtol=1e-5)


def test_untraceable_train_step_is_refused_naming_the_method(tmp_path):
    model = tm.custom_step_model(tm.EagerOnlyStepModel)
    target = tmp_path / "r"
    with pytest.raises(
        UnsupportedModelError, match=r"(?s)EagerOnlyStepModel\.train_step.*serving_only"
    ):
        export_core.export_saved_model(model, str(target))
    assert not target.exists() or not os.listdir(target)
    served = export_core.export_saved_model(model, str(target), serving_only=True)
    assert os.path.exists(os.path.join(served, "saved_model.pb"))


def test_vocabulary_asset_is_listed_in_the_manifest_with_its_hash(tmp_path):
    import hashlib
    import json

    vocabulary = tm.write_vocabulary(str(tmp_path / "vocab.txt"))
    model = tm.text_classifier(vocabulary)
    path = export_core.export_saved_model(model, str(tmp_path / "registry"))
    with open(os.path.join(path, "export_manifest.json"), encoding="utf-8") as handle:
        files = json.load(handle)["files"]
    with open(vocabulary, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert files["assets/vocab.txt"]["sha256"] == digest


def test_string_input_signature_override_and_inspect_show_string_dtypes(tmp_path):
    from export_core.registry.versions import inspect_saved_model

    text = keras.Input(shape=(1,), dtype="string", name="text")
    hashed = keras.layers.Hashing(num_bins=4, output_mode="one_hot")(text)
    model = keras.Model(text, keras.layers.Dense(1, name="y")(hashed))
    model.compile("sgd", "mse")
    signature = tf.TensorSpec((None, 1), tf.string, name="review")
    path = export_core.export_saved_model(
        model, str(tmp_path / "registry"), input_signature=signature
    )
    description = inspect_saved_model(path)
    for meta_graph in description["meta_graphs"] + description["manifest"]["meta_graphs"]:
        for signature_def in meta_graph["signatures"].values():
            review = [t for t in signature_def["inputs"] if t["name"] == "review"]
            assert review == [{"name": "review", "shape": [None, 1], "dtype": "string"}]
    reviews = np.array([[b"good"], [b"bad"]], dtype=object)
    got = tf1_step(path, "serve", {"review": reviews})[0]
    assert_allclose(got["y"], model.predict(tf.constant(reviews), verbose=0), atol=1e-6)
