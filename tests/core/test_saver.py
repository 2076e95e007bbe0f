"""The TF1 save/restore ops written into each MetaGraph (export_core.tf_internals.saver)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from numpy.testing import assert_allclose

import export_core
from export_core.tf_internals import saver
from tests import models
from tests.models import read_proto, tf1_load, tf1_run


def test_restore_and_save_ops_are_plain_graph_nodes(trained_functional):
    _, path, _, _ = trained_functional
    for meta_graph in read_proto(path).meta_graphs:
        saver_def = meta_graph.saver_def
        ops = {n.name: n.op for n in meta_graph.graph_def.node}
        assert ops[saver_def.restore_op_name] == "NoOp"
        assert ops[saver_def.filename_tensor_name.split(":")[0]] == "Placeholder"
        assert "RestoreV2" in ops.values() and "SaveV2" in ops.values()
        # No traced save/restore functions: the loader has nothing to instantiate.
        assert not any("restore" in f.signature.name for f in meta_graph.graph_def.library.function)


def test_train_graph_state_saved_in_a_session_restores_into_another(trained_functional, tmp_path):
    """Estimator-style use: load the train graph, step, save, go on elsewhere."""
    _, path, _, (x, y) = trained_functional
    prefix = str(tmp_path / "after_two_steps")
    feeds = {"features": x, "prediction_target": y}
    sess, meta_graph = tf1_load(path, "train")
    with sess:
        for _ in range(2):
            tf1_run(sess, meta_graph, "train", feeds)
        saver_def = meta_graph.saver_def
        sess.run(saver_def.save_tensor_name, {saver_def.filename_tensor_name: prefix})
        continued = [tf1_run(sess, meta_graph, "train", feeds) for _ in range(2)]
    original = dict(tf.train.list_variables(f"{path}/variables/variables"))
    resaved = dict(tf.train.list_variables(prefix))
    assert set(resaved) == set(original) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}

    sess, meta_graph = tf1_load(path, "train")
    with sess:
        sess.run(saver_def.restore_op_name, {saver_def.filename_tensor_name: prefix})
        assert sess.run(tf.compat.v1.train.get_global_step(sess.graph)) == models.STEPS + 2
        resumed = [tf1_run(sess, meta_graph, "train", feeds) for _ in range(2)]
    # Same weights, and (second step) the same Adam moments, as the uninterrupted session.
    for want, got in zip(continued, resumed, strict=True):
        assert_allclose(got["loss"], want["loss"], rtol=1e-6)
        assert_allclose(got["predictions/prediction"], want["predictions/prediction"], rtol=1e-6)


class TwinDense(keras.Model):
    """Two sub-layers given the same name: their variables share a name."""

    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(3, name="twin")
        self.second = keras.layers.Dense(2, name="twin")

    def call(self, inputs):
        return self.second(self.first(inputs))


def test_variables_sharing_a_name_fall_back_to_tensorflows_saver(tmp_path, batch):
    model = TwinDense()
    expected = model.predict(batch, verbose=0)
    names = {v.path for v in model.weights}
    assert len(names) < len(model.weights), "the test needs variables whose names repeat"
    assert not saver.has_unique_names({"model_variables": [v.value for v in model.weights]})
    path = export_core.export_saved_model(model, str(tmp_path), serving_only=True)
    (meta_graph,) = read_proto(path).meta_graphs
    assert not meta_graph.saver_def.restore_op_name.startswith("save/")
    got = models.tf1_predict(path, {"inputs": batch})
    assert_allclose(next(iter(got.values())), expected, atol=1e-5)


def test_checkpoint_over_the_shard_size_is_split_and_every_loader_reads_it(tmp_path, monkeypatch):
    """A checkpoint bigger than SHARD_BYTES is written as several data files.

    Every MetaGraph's plain RestoreV2, the TF2 loader and the export's own
    verification find each tensor in its file through the index.
    """
    from export_core import constants

    keras.utils.set_random_seed(3)
    inputs = keras.Input((256,), name="features")
    hidden = keras.layers.Dense(1024, activation="relu", name="wide")(inputs)  # 1 MiB kernel
    model = keras.Model(inputs, keras.layers.Dense(2, name="prediction")(hidden))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    x = np.random.default_rng(1).standard_normal((8, 256)).astype("float32")
    y = np.random.default_rng(2).standard_normal((8, 2)).astype("float32")
    model.train_on_batch(x, y)
    expected = model.predict(x, verbose=0)
    monkeypatch.setattr(constants, "SHARD_BYTES", 256 * 1024)

    path = export_core.export_saved_model(model, str(tmp_path / "export"))

    data = sorted(p.name for p in (tmp_path / "export").glob("*/variables/variables.data-*"))
    # The 1 MiB kernel and its two Adam moments a file each, the small rest in one.
    assert len(data) == 4, data
    assert_allclose(models.tf1_predict(path, {"features": x})["prediction"], expected, atol=1e-5)
    loaded = tf.saved_model.load(path, tags=["serve"])
    got = loaded.signatures["serving_default"](features=tf.constant(x))["prediction"]
    assert_allclose(got.numpy(), expected, atol=1e-5)
    # Each TF1 graph restores every key (model, Adam slots, metrics) whole: re-saved
    # unsharded from a session, the values equal the sharded originals.
    original = tf.train.load_checkpoint(f"{path}/variables/variables")
    for tag in ("serve", "train", "eval"):
        sess, meta_graph = tf1_load(path, tag)
        prefix = str(tmp_path / f"resaved_{tag}")
        with sess:
            saver_def = meta_graph.saver_def
            sess.run(saver_def.save_tensor_name, {saver_def.filename_tensor_name: prefix})
        resaved = tf.train.load_checkpoint(prefix)
        keys = resaved.get_variable_to_shape_map()
        assert any(original.get_variable_to_shape_map()[k] == [256, 1024] for k in keys)
        for key in keys:
            np.testing.assert_array_equal(resaved.get_tensor(key), original.get_tensor(key))
