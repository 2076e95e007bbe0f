"""A model trained and saved under Keras's torch backend, exported here under TensorFlow.

The model is trained in a side environment with PyTorch (``KERAS_BACKEND=torch``),
which saves beside the ``.keras`` file torch's own ``predict``, ``evaluate`` and
optimizer state. The export, through the CLI and through the flow, must serve and
evaluate the same numbers and carry the same optimizer state into the ``train``
MetaGraph.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from numpy.testing import assert_allclose

from tests.helpers import CLI, ROOT
from tests.models import tf1_load, tf1_run


@pytest.fixture(scope="module")
def torch_trained(torch_python, tmp_path_factory):
    out = tmp_path_factory.mktemp("torch-trained")
    script = os.path.join(os.path.dirname(__file__), "train_on_torch.py")
    run = subprocess.run(
        [torch_python, script, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    numbers = dict(np.load(out / "numbers.npz"))
    evaluated = json.loads((out / "evaluate.json").read_text())
    return out, numbers, evaluated


def assert_same_as_torch(path: str, numbers: dict, evaluated: dict) -> None:
    """serve = torch's predict, eval = torch's evaluate, checkpoint = torch's optimizer."""
    for tag, key, feeds in (
        ("serve", "serving_default", {"features": numbers["x"]}),
        ("eval", "eval", {"features": numbers["x"], "probs_target": numbers["y"]}),
    ):
        sess, meta_graph = tf1_load(path, tag)
        with sess:
            got = tf1_run(sess, meta_graph, key, feeds)
        if tag == "serve":
            assert_allclose(got["probs"], numbers["predictions"], atol=1e-5)
        else:
            assert_allclose(got["loss"], evaluated["loss"], rtol=1e-5)
            assert_allclose(
                got["metrics/sparse_categorical_accuracy/value"],
                evaluated["sparse_categorical_accuracy"],
                rtol=1e-6,
            )
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    optimizer = [k for k in numbers if k.startswith("optimizer_")]
    assert len(optimizer) > 2, "torch's Adam saved its iterations and moments"
    for key in optimizer:
        index = key.removeprefix("optimizer_")
        saved = reader.get_tensor(f"optimizer_variables/{index}/.ATTRIBUTES/VARIABLE_VALUE")
        assert_allclose(saved, numbers[key], rtol=1e-6, err_msg=f"optimizer variable {index}")


def test_cli_exports_a_torch_trained_model_in_all_modes(torch_trained, tmp_path):
    out, numbers, evaluated = torch_trained
    registry = tmp_path / "registry"
    run = subprocess.run(
        [CLI, "--json", "export", str(out / "model.keras"), str(registry)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["modes"] == ["serve", "train", "eval"]
    assert_same_as_torch(result["path"], numbers, evaluated)


def test_flow_exports_a_torch_trained_model_in_all_modes(torch_trained, prefect_api, tmp_path):
    from keras_export.flows import export_keras_model

    out, numbers, evaluated = torch_trained
    result = export_keras_model(model=str(out / "model.keras"), destination=str(tmp_path / "r"))
    assert result["modes"] == ["serve", "train", "eval"]
    assert_same_as_torch(result["path"], numbers, evaluated)


def test_a_layer_running_torch_code_is_refused_by_name(torch_trained, tmp_path):
    out, _, _ = torch_trained
    registry = tmp_path / "registry"
    run = subprocess.run(
        [CLI, "export", str(out / "wrapped.keras"), str(registry)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert "'torch_linear'" in last and "TorchModuleWrapper" in last and "torch code" in last
    assert not registry.exists()
