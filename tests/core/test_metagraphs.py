"""Points 4-6: one MetaGraph per mode, working train/eval graphs, TF's own loaders."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.testing import assert_allclose
from tensorflow.python.saved_model import loader_impl

import export_core
from tests import models
from tests.models import read_proto, tf1_load, tf1_run

EXPECTED_TAGS = [["serve"], ["train"], ["eval"]]


def test_compiled_model_gets_serve_train_and_eval_metagraphs(trained_functional):
    _, path, _, _ = trained_functional
    meta_graphs = read_proto(path).meta_graphs
    assert [list(m.meta_info_def.tags) for m in meta_graphs] == EXPECTED_TAGS
    serve, train, evaluate = meta_graphs
    assert serve.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
    assert train.signature_def["train"].method_name == "tensorflow/supervised/training"
    assert evaluate.signature_def["eval"].method_name == "tensorflow/supervised/eval"
    assert "train" not in serve.signature_def and "eval" not in train.signature_def


def test_signature_keys_follow_the_original_naming(trained_functional):
    _, path, _, _ = trained_functional
    serve, train, evaluate = read_proto(path).meta_graphs
    predict = serve.signature_def["serving_default"]
    assert set(predict.inputs) == {"features"}
    assert set(predict.outputs) == {"prediction"}
    for meta_graph, key in ((train, "train"), (evaluate, "eval")):
        signature = meta_graph.signature_def[key]
        assert set(signature.inputs) == {"features", "prediction_target"}
        assert set(signature.outputs) == {
            "loss",
            "predictions/prediction",
            "metrics/mae/value",
            "metrics/mae/update_op",
        }


def test_uncompiled_model_gets_serve_only(tmp_path, batch):
    model = keras.Sequential([keras.Input((3,), name="x"), keras.layers.Dense(2, name="y")])
    path = export_core.export_saved_model(model, str(tmp_path))
    assert [list(m.meta_info_def.tags) for m in read_proto(path).meta_graphs] == [["serve"]]
    got = models.tf1_predict(path, {"x": batch})["y"]
    assert_allclose(got, model.predict(batch, verbose=0), atol=1e-5)


def test_global_step_is_the_optimizer_iteration_count(trained_functional):
    _, path, _, (x, y) = trained_functional
    for tag in ("train", "eval"):
        sess, _ = tf1_load(path, tag)
        with sess:
            step = tf.compat.v1.train.get_global_step(sess.graph)
            assert step is not None, f"no global step in the {tag} graph"
            assert sess.run(step) == models.STEPS


def test_train_signature_applies_one_step_with_restored_adam_state(trained_functional):
    _, path, reference_path, (x, y) = trained_functional
    reference = keras.saving.load_model(reference_path)  # same weights + Adam moments
    expected_loss = reference.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    reference.train_on_batch(x, y)
    expected_after = reference.predict(x, verbose=0)

    sess, meta_graph = tf1_load(path, "train")
    with sess:
        step = tf.compat.v1.train.get_global_step(sess.graph)
        feeds = {"features": x, "prediction_target": y}
        first = tf1_run(sess, meta_graph, "train", feeds)
        assert sess.run(step) == models.STEPS + 1
        second = tf1_run(sess, meta_graph, "train", feeds)
    assert_allclose(first["loss"], expected_loss, rtol=1e-5)
    # The second call predicts with the weights after one step. Fresh Adam moments
    # would move the weights differently, so this also checks slot restoration.
    assert_allclose(second["predictions/prediction"], expected_after, rtol=1e-4, atol=1e-5)
    assert not np.allclose(first["predictions/prediction"], second["predictions/prediction"])


def test_train_op_is_reachable_the_way_tensorflow_loaders_expect(trained_functional):
    _, path, _, (x, y) = trained_functional
    sess, meta_graph = tf1_load(path, "train")
    with sess:
        train_op = loader_impl.get_train_op(meta_graph)
        assert train_op is not None
        signature = meta_graph.signature_def["train"]
        feeds = {
            signature.inputs["features"].name: x,
            signature.inputs["prediction_target"].name: y,
        }
        step = tf.compat.v1.train.get_global_step(sess.graph)
        sess.run(train_op, feeds)
        assert sess.run(step) == models.STEPS + 1


def test_eval_loss_and_metrics_equal_keras_evaluate(trained_functional):
    model, path, reference_path, (x, y) = trained_functional
    expected = keras.saving.load_model(reference_path).evaluate(x, y, verbose=0, return_dict=True)
    sess, meta_graph = tf1_load(path, "eval")
    with sess:
        got = tf1_run(sess, meta_graph, "eval", {"features": x, "prediction_target": y})
        step = tf.compat.v1.train.get_global_step(sess.graph)
        assert sess.run(step) == models.STEPS  # eval never steps
    assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    assert_allclose(got["metrics/mae/value"], expected["mae"], rtol=1e-5)
    assert_allclose(got["predictions/prediction"], model.predict(x, verbose=0), atol=1e-5)


def test_train_graph_runs_layers_in_training_mode(tmp_path):
    model = models.model_with_training_branch()
    x = np.ones((2, 3), "float32")
    model.train_on_batch(x, np.ones((2, 2), "float32"))
    path = export_core.export_saved_model(model, str(tmp_path))
    feeds = {"features": x, "zeros_in_training_target": np.ones((2, 2), "float32")}
    sess, meta_graph = tf1_load(path, "train")
    with sess:
        train = tf1_run(sess, meta_graph, "train", feeds)
    sess, meta_graph = tf1_load(path, "eval")
    with sess:
        evaluate = tf1_run(sess, meta_graph, "eval", feeds)
    served = models.tf1_predict(path, {"features": x})["zeros_in_training"]
    assert np.all(train["predictions/zeros_in_training"] == 0)
    assert np.any(evaluate["predictions/zeros_in_training"] != 0)
    assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)


def test_dropout_is_active_in_train_graph_only(tmp_path):
    model = models.functional_regressor(dropout=0.9)
    x, y = models.regression_batch(64)
    path = export_core.export_saved_model(model, str(tmp_path))
    sess, meta_graph = tf1_load(path, "train")
    with sess:
        train = tf1_run(sess, meta_graph, "train", {"features": x, "prediction_target": y})
    eager_eval = model.predict(x, verbose=0)
    assert not np.allclose(train["predictions/prediction"], eager_eval, atol=1e-3)
    assert_allclose(models.tf1_predict(path, {"features": x})["prediction"], eager_eval, atol=1e-5)


@pytest.mark.parametrize("tag", ["serve", "train", "eval"])
def test_tf2_loader_loads_every_metagraph(trained_functional, tag):
    model, path, _, (x, y) = trained_functional
    loaded = tf.saved_model.load(path, tags=[tag])
    key = {"serve": "serving_default", "train": "train", "eval": "eval"}[tag]
    fn = loaded.signatures[key]
    if tag == "serve":
        out = fn(features=tf.constant(x))["prediction"]
        assert_allclose(out.numpy(), model.predict(x, verbose=0), atol=1e-5)
    else:
        out = fn(features=tf.constant(x), prediction_target=tf.constant(y))
        assert np.isfinite(out["loss"].numpy())


def test_saved_model_cli_lists_every_metagraph(trained_functional):
    _, path, _, _ = trained_functional
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", path, "--all"], capture_output=True, text=True, check=True
    ).stdout
    for tag, key in (("serve", "serving_default"), ("train", "train"), ("eval", "eval")):
        assert f"MetaGraphDef with tag-set: '{tag}'" in shown
        assert f"signature_def['{key}']" in shown


def test_serving_only_export_is_a_single_metagraph_for_every_loader(tmp_path, batch):
    model = models.functional_regressor()
    path = export_core.export_saved_model(model, str(tmp_path), serving_only=True)
    assert [list(m.meta_info_def.tags) for m in read_proto(path).meta_graphs] == [["serve"]]
    expected = model.predict(batch, verbose=0)
    plain = tf.saved_model.load(path).signatures["serving_default"]
    assert_allclose(plain(features=tf.constant(batch))["prediction"], expected, atol=1e-5)
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    assert_allclose(layer(batch)["prediction"], expected, atol=1e-5)
    assert_allclose(
        models.tf1_predict(path, {"features": batch})["prediction"], expected, atol=1e-5
    )
