"""Outside tools read the serve MetaGraph of a three-mode export: freezing, tf2onnx."""

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


def string_lookup_model() -> keras.Model:
    color = keras.Input((1,), dtype="string", name="color")
    onehot = keras.layers.StringLookup(vocabulary=["red", "green", "blue"], output_mode="one_hot")
    score = keras.layers.Dense(1, name="score")(onehot(color))
    model = keras.Model(color, score, name="colors")
    model.compile("adam", "mse")
    return model


CASES = {
    "dense": (
        models.functional_regressor,
        lambda: {"features": models.regression_batch()[0]},
        "prediction",
    ),
    "lookup_table": (
        string_lookup_model,
        lambda: {"color": np.array([[b"red"], [b"blue"], [b"nope"]], dtype=object)},
        "score",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tf2onnx_converts_the_serve_tag_of_a_three_mode_export(case, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="installed by the test extra")
    build, feeds, output = CASES[case]
    model = build()
    path = export_core.export_saved_model(model, str(tmp_path / "registry"))
    assert len(loader_impl.parse_saved_model(path).meta_graphs) == 3
    onnx_file = str(tmp_path / "model.onnx")
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", path, "--tag", "serve"]
    command += ["--signature_def", "serving_default", "--output", onnx_file]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Unsupported ops" not in run.stderr, run.stderr[-3000:]
    session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    x = feeds()
    names = {i.name.split(":")[0]: i.name for i in session.get_inputs()}
    onnx_inputs = {names[k]: (v.astype(str) if v.dtype == object else v) for k, v in x.items()}
    outputs = [o.name for o in session.get_outputs()]
    got = dict(zip(outputs, session.run(None, onnx_inputs), strict=True))
    expected = model.predict({k: tf.constant(v) for k, v in x.items()}, verbose=0)
    assert_allclose(got[output], expected, atol=1e-5)


def test_tf1_freeze_of_the_serve_metagraph_leaves_no_variables(tmp_path):
    model = models.functional_regressor()
    path = export_core.export_saved_model(model, str(tmp_path / "registry"))
    x = models.regression_batch()[0]
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        meta_graph = tf.compat.v1.saved_model.load(sess, ["serve"], path)
        signature = meta_graph.signature_def["serving_default"]
        output = signature.outputs["prediction"].name
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), [output.split(":")[0]]
        )
    ops = {n.op for n in frozen.node} | {n.op for f in frozen.library.function for n in f.node_def}
    assert not ops & {"VarHandleOp", "VariableV2"}, ops
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        tf.compat.v1.import_graph_def(frozen, name="")
        got = sess.run(output, {signature.inputs["features"].name: x})
    assert_allclose(got, model.predict(x, verbose=0), atol=1e-5)


def test_tf2_loader_of_a_three_mode_export_holds_real_variables(tmp_path):
    model = models.functional_regressor()
    path = export_core.export_saved_model(model, str(tmp_path / "registry"))
    loaded = tf.saved_model.load(path, tags=["serve"])
    assert len(loaded.variables) == len(model.weights)
    captured = loaded.signatures["serving_default"].graph.as_graph_def()
    assert "VarHandleOp" not in {n.op for n in captured.node}
    assert os.path.exists(os.path.join(path, "golden.npz"))
