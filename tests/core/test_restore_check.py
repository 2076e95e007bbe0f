"""Train and eval MetaGraphs: their restore is checked against the checkpoint's index.

A real export (Adam, all modes) is reloaded by verify-reload; then its train
MetaGraph is edited so that its restore asks for a key, a dtype or a shape the
checkpoint does not have. Each is caught without restoring the train graph, with
a message naming what is wrong, exactly where a TF1 restore would have failed.
"""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest
import tensorflow as tf

import export_core
from export_core import constants as c
from export_core.steps.restore_check import restore_plan
from export_core.steps.verify import inputs_from_saved_model, verify_reload
from export_core.tf_internals.tf_private import parse_saved_model
from tests import models


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = models.functional_regressor()
    x, y = models.regression_batch()
    model.train_on_batch(x, y)
    return export_core.export_saved_model(model, str(tmp_path_factory.mktemp("rc") / "m"))


def edited(path: str, tmp_path, edit) -> str:
    """A copy of the export whose train MetaGraph ``edit(meta_graph)`` changed."""
    copy = str(tmp_path / "edited")
    shutil.copytree(path, copy)
    saved_model = parse_saved_model(copy)
    train = next(m for m in saved_model.meta_graphs if c.TRAIN in m.meta_info_def.tags)
    edit(train)
    with open(os.path.join(copy, c.SAVED_MODEL_PB), "wb") as f:
        f.write(saved_model.SerializeToString())
    return copy


def restore_node(meta_graph, op: str):
    return next(n for n in meta_graph.graph_def.node if n.op == op and "save" in n.name)


def verify(path: str):
    modes = (c.SERVE, c.TRAIN, c.EVAL)
    return verify_reload(path, None, inputs_from_saved_model(path), modes)


def test_every_key_the_train_restore_names_is_in_the_checkpoint(exported):
    saved_model = parse_saved_model(exported)
    reader = tf.train.load_checkpoint(os.path.join(exported, "variables", "variables"))
    for meta_graph in saved_model.meta_graphs:
        plan = restore_plan(meta_graph)
        assert plan, "the exporter's own restore nodes are readable"
        for item in plan:
            assert reader.has_tensor(item.key), item.key
    train = next(m for m in saved_model.meta_graphs if c.TRAIN in m.meta_info_def.tags)
    serve = next(m for m in saved_model.meta_graphs if c.SERVE in m.meta_info_def.tags)
    assert len(restore_plan(train)) > len(restore_plan(serve)), "train restores the slots too"
    assert set(verify(exported).loaders) == {"tf1:serve", "tf2:serve", "tf1:train", "tf1:eval"}


def test_a_key_missing_from_the_checkpoint_is_caught(exported, tmp_path):
    def rename_first_key(meta_graph):
        names = next(n for n in meta_graph.graph_def.node if n.name.endswith("tensor_names"))
        keys = tf.make_ndarray(names.attr["value"].tensor)
        keys[0] = b"optimizer/999/.ATTRIBUTES/VARIABLE_VALUE"
        names.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(keys))

    with pytest.raises(export_core.VerificationError, match="does not hold"):
        verify(edited(exported, tmp_path, rename_first_key))


def test_a_dtype_the_checkpoint_does_not_hold_is_caught(exported, tmp_path):
    def read_as_float64(meta_graph):
        restore_node(meta_graph, "RestoreV2").attr["dtypes"].list.type[0] = (
            tf.float64.as_datatype_enum
        )

    with pytest.raises(export_core.VerificationError, match="as float64"):
        verify(edited(exported, tmp_path, read_as_float64))


def test_a_variable_of_another_shape_is_caught(exported, tmp_path):
    def widen_a_variable(meta_graph):
        plan_nodes = {n.name: n for n in meta_graph.graph_def.node}
        assign = restore_node(meta_graph, "AssignVariableOp")
        handle = plan_nodes[assign.input[0]]
        dims = [d.size for d in handle.attr["shape"].shape.dim]
        handle.attr["shape"].shape.CopyFrom(tf.TensorShape([*dims, 2]).as_proto())

    with pytest.raises(export_core.VerificationError, match="into a variable of shape"):
        verify(edited(exported, tmp_path, widen_a_variable))


def test_full_verification_still_restores_the_train_graph(exported, tmp_path):
    """The index check stands in for the restore by default; full runs the restores
    (TF1's Python Saver then maps a missing key through the checkpoint's object graph,
    which TensorFlow Serving's C++ restore does not: the TF2 loader fails on it)."""

    def rename_first_key(meta_graph):
        names = next(n for n in meta_graph.graph_def.node if n.name.endswith("tensor_names"))
        keys = tf.make_ndarray(names.attr["value"].tensor)
        keys[0] = b"optimizer/999/.ATTRIBUTES/VARIABLE_VALUE"
        names.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(keys))

    path = edited(exported, tmp_path, rename_first_key)
    modes = (c.SERVE, c.TRAIN, c.EVAL)
    with pytest.raises(export_core.VerificationError, match="not found in checkpoint"):
        verify_reload(path, None, inputs_from_saved_model(path), modes, full=True)
    assert np.isfinite(verify(exported).max_abs_diff)


class CountingSession(tf.compat.v1.Session):
    """A real session that counts its runs."""

    runs = 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return super().run(*args, **kwargs)


def test_a_checked_train_graph_runs_its_init_op_only_when_it_initializes_something(
    exported, tmp_path
):
    """Without restoring, a bare NoOp init op has nothing to run (the session would
    only copy the graph); one that fills lookup tables runs, and the tables work."""
    from export_core.tf_internals.tf_private import tf1_session_load
    from tests import text_models

    with CountingSession(graph=tf.Graph()) as sess:
        tf1_session_load(sess, exported, c.TRAIN, threading.Lock(), restore=False)
        assert sess.runs == 0
    model = text_models.text_classifier()
    model.train_on_batch(text_models.SENTENCES, text_models.LABELS)
    path = export_core.export_saved_model(model, str(tmp_path / "text"))
    with CountingSession(graph=tf.Graph()) as sess:
        meta_graph = tf1_session_load(sess, path, c.TRAIN, threading.Lock(), restore=False)
        assert sess.runs == 1
        handle = next(o for o in sess.graph.get_operations() if o.type.endswith("HashTableV2"))
        with sess.graph.as_default():
            size = tf.raw_ops.LookupTableSizeV2(table_handle=handle.outputs[0])
        assert sess.run(size) > 0  # the vocabulary is in the table
    assert c.TRAIN in meta_graph.meta_info_def.tags
