"""The conformance matrix (``tests/conformance/cells.py``): every cell equals Keras, or is refused.

For every cell Keras itself is the oracle, on the model the export was made from:
``serve`` equals ``predict``; ``eval`` equals ``evaluate`` (loss and every metric);
one TF1 ``train`` call equals ``train_on_batch`` (loss, every metric, and every
weight and optimizer variable afterwards). A refused cell raises
``UnsupportedModelError`` naming the feature, with nothing written.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import export_core
from export_core.errors import UnsupportedModelError
from tests.conformance import cells as conformance
from tests.helpers import ROOT
from tests.models import tf1_load, tf1_run

CELLS = conformance.cells()
SIGNATURES = {"serve": "serving_default", "train": "train", "eval": "eval"}


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.config.set_dtype_policy("float32")


def tolerance(policy: str) -> dict:
    """float32 graphs agree to float32 rounding; float16/bfloat16 compute to theirs."""
    return {
        "float32": {"rtol": 1e-5, "atol": 1e-6},
        "mixed_float16": {"rtol": 2e-3, "atol": 2e-4},
        "mixed_bfloat16": {"rtol": 2e-2, "atol": 2e-3},
    }[policy]


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_cell_equals_keras_or_is_refused(cell, tmp_path):
    setup = conformance.build(cell.spec)
    model = setup.model
    base = tmp_path / "registry"
    try:
        path = export_core.export_saved_model(model, str(base))
    except UnsupportedModelError as exc:
        assert cell.refused, f"{cell.id} was refused but should export: {exc}"
        assert cell.refused in str(exc), f"the refusal does not name {cell.refused!r}: {exc}"
        assert not base.exists() or not any(base.iterdir()), "a refused export wrote files"
        return
    assert not cell.refused, f"{cell.id} exported but the matrix expects a refusal"
    tol = tolerance(setup.policy)
    feeds = serving_feeds(path, cell.spec, setup.x)
    check_serve(path, cell.spec, model, setup.x, feeds, tol)
    targets = target_feeds(path, cell.spec, setup.y)
    evaluated = run_tf1(path, "eval", {**feeds, **targets})
    trained, variables = run_tf1_train(path, {**feeds, **targets})
    n = len(keras.tree.flatten(setup.x)[0])
    expected_eval = model.evaluate(setup.x, setup.y, batch_size=n, verbose=0, return_dict=True)
    check_logs("eval", evaluated, expected_eval, tol)
    model.reset_metrics()  # the exported graphs start from zeroed metrics
    expected_train = model.train_on_batch(setup.x, setup.y, return_dict=True)
    check_logs("train", trained, expected_train, tol)
    check_variables(variables, model, tol)


def serving_feeds(path: str, spec, x) -> dict:
    """The serving signature's inputs, named as the matrix expects, fed from ``x``."""
    sess, meta_graph = tf1_load(path, "serve")
    sess.close()
    names = conformance.input_names(spec)
    assert sorted(meta_graph.signature_def["serving_default"].inputs) == sorted(names)
    return dict(zip(names, keras.tree.flatten(x), strict=True))


def target_feeds(path: str, spec, y) -> dict:
    sess, meta_graph = tf1_load(path, "eval")
    sess.close()
    names = [f"{n}_target" for n in conformance.output_names(spec)]
    assert sorted(
        n for n in meta_graph.signature_def["eval"].inputs if n.endswith("_target")
    ) == sorted(names)
    return dict(zip(names, keras.tree.flatten(y), strict=True))


def check_serve(path: str, spec, model, x, feeds: dict, tol: dict) -> None:
    got = run_tf1(path, "serve", feeds)
    expected = keras.tree.flatten(model.predict(x, verbose=0))
    names = conformance.output_names(spec)
    assert sorted(got) == sorted(names)
    for name, want in zip(names, expected, strict=True):
        np.testing.assert_allclose(got[name], want, **tol, err_msg=f"serve {name} vs predict")


def run_tf1(path: str, tag: str, feeds: dict) -> dict:
    sess, meta_graph = tf1_load(path, tag)
    with sess:
        return tf1_run(sess, meta_graph, SIGNATURES[tag], feeds)


def run_tf1_train(path: str, feeds: dict) -> tuple[dict, dict]:
    """One ``train`` call; its outputs and every variable afterwards, by checkpoint key
    (written with the MetaGraph's own TF1 save op, as ``tf.compat.v1`` users save)."""
    sess, meta_graph = tf1_load(path, "train")
    with sess:
        out = tf1_run(sess, meta_graph, "train", feeds)
        os.makedirs(path + "-after")
        prefix = os.path.join(path + "-after", "variables")
        saver = meta_graph.saver_def
        sess.run(saver.save_tensor_name, {saver.filename_tensor_name: prefix})
    reader = tf.train.load_checkpoint(prefix)
    keys = reader.get_variable_to_shape_map()
    return out, {k: reader.get_tensor(k) for k in keys}


def check_logs(mode: str, got: dict, expected: dict, tol: dict) -> None:
    np.testing.assert_allclose(got["loss"], expected["loss"], **tol, err_msg=f"{mode} loss")
    for name, value in expected.items():
        if name == "loss":
            continue
        key = f"metrics/{name}/value"
        assert key in got, f"{mode}: metric {name!r} missing from {sorted(got)}"
        np.testing.assert_allclose(got[key], value, **tol, err_msg=f"{mode} metric {name}")


def check_variables(saved: dict, model, tol: dict) -> None:
    groups = {"model_variables": model.variables, "optimizer_variables": model.optimizer.variables}
    for group, variables in groups.items():
        for i, variable in enumerate(variables):
            key = f"{group}/{i}/.ATTRIBUTES/VARIABLE_VALUE"
            assert key in saved, f"{key} ({variable.path}) is not in the train graph's variables"
            want = keras.ops.convert_to_numpy(variable.value)
            np.testing.assert_allclose(
                np.asarray(saved[key], dtype=np.float64) if want.dtype.kind == "f" else saved[key],
                want.astype(np.float64) if want.dtype.kind == "f" else want,
                **tol,
                err_msg=f"after one train step: {variable.path} ({group}[{i}])",
            )


def test_every_optimizer_option_has_a_value_in_the_matrix():
    missing = [k for k, v in conformance.optimizer_options().items() if not v]
    assert not missing, f"keras.optimizers.Optimizer takes {missing}: add them to OPTION_VALUES"


README_START = "<!-- conformance matrix: python -m tests.conformance.cells -->"
README_END = "<!-- end of conformance matrix -->"


def test_the_readme_table_is_the_matrix():
    """The README claims exactly the outcomes the cells above check."""
    from pathlib import Path

    text = (Path(ROOT) / "README.md").read_text(encoding="utf-8")
    assert README_START in text and README_END in text, "README lost the conformance table"
    table = text.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert table == conformance.readme_table(), (
        "README's conformance table is stale: paste the output of python -m tests.conformance.cells"
    )
