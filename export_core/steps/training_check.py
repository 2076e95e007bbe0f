"""Verification of the train and eval MetaGraphs against Keras itself, on the user's model.

Serving parity shows that ``serve`` computes what the model computes. The train and
eval graphs are checked the same way, with Keras as the oracle: the exported
``eval`` signature, run in a TF1 session on the golden inputs and targets, must give
the loss and metrics ``evaluate`` gives on them; one call of the exported ``train``
signature must give the loss and metrics ``train_on_batch`` gives, and leave every
weight and optimizer variable (read back through the MetaGraph's own TF1 save op)
where Keras's own step leaves them.

Keras runs on a throwaway copy of the model (``clone_for_mode(..., share=False)``:
its own weights, optimizer state and metrics, copied from the model's), never on
the caller's model or optimizer. The copy's optimizer must be of the model's class
and configuration (a wrapper such as ``LossScaleOptimizer`` included), which this
check asserts too. A step whose result Keras itself does not reproduce (a layer
drawing random numbers that Keras's seed generators do not seed) cannot be compared:
that is recorded, not failed.

Targets are synthesized from the target inputs of the signatures: values in [0, 1)
for floating targets, class ids below the prediction's last dimension for integer
ones; Keras's loss and the exported one see the same numbers, so any finite value
serves.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from export_core import constants as c
from export_core.errors import VerificationError
from export_core.model.signature import TensorInfo
from export_core.steps.oracle import (
    keras_batch,
    keras_step,
    not_deterministic,
    oracle_copy,
    state_of,
    variable_groups,
)
from export_core.steps.validate import ExportPlan

# By default the check runs for models of up to this many parameters (weights, as
# ``model.count_params()`` counts them); above it, only with full verification. It
# holds a second copy of the weights and optimizer state, and its time goes mostly to
# TensorFlow's first run of the exported train graph (see the README's Performance).
DEFAULT_MAX_PARAMETERS = 5_000_000
SEED = 1


@dataclass(frozen=True)
class TrainingCheck:
    """What the check compared: the largest differences, or why it did not run."""

    eval_max_abs_diff: float | None = None
    train_max_abs_diff: float | None = None
    compared: tuple[str, ...] = ()
    skipped: str | None = None
    not_comparable: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 4),
            "eval_max_abs_diff": self.eval_max_abs_diff,
            "train_max_abs_diff": self.train_max_abs_diff,
            "compared": list(self.compared),
            "skipped": self.skipped,
            "not_comparable": self.not_comparable,
        }


def parameter_count(model: keras.Model) -> int:
    """The model's weights, in elements (``model.count_params()``)."""
    return sum(int(np.prod(v.shape)) for v in model.weights)


def should_check(model: keras.Model, plan: ExportPlan, full: bool) -> str | None:
    """None when the check runs, else why it does not."""
    if not any(m != c.SERVE for m in plan.modes):
        return "no train or eval MetaGraph"
    if not full and parameter_count(model) > DEFAULT_MAX_PARAMETERS:
        return (
            f"over {DEFAULT_MAX_PARAMETERS:,} parameters: runs with full verification "
            "(verify='full', flow full_verify=True, CLI --full-verify)"
        )
    return None


def check_training(
    build_dir: str,
    model: keras.Model,
    plan: ExportPlan,
    feeds: Mapping[str, np.ndarray],
    tolerance: float,
    custom_objects: Mapping[str, Any] | None = None,
) -> TrainingCheck:
    """Runs the exported eval and train signatures and Keras's own steps; compares.

    Raises:
        VerificationError: A loss, metric or variable differs by more than
            ``tolerance`` (rtol = atol), naming it and both values.
    """
    started = time.perf_counter()
    result = _check(build_dir, model, plan, feeds, tolerance, custom_objects)
    return dataclasses.replace(result, seconds=time.perf_counter() - started)


def _check(
    build_dir: str,
    model: keras.Model,
    plan: ExportPlan,
    feeds: Mapping[str, np.ndarray],
    tolerance: float,
    custom_objects: Mapping[str, Any] | None,
) -> TrainingCheck:
    targets = synthesize_targets(_target_infos(build_dir), feeds)
    signature_feeds = {**feeds, **{t.name: v for t, v in targets.items()}}
    # The exported graphs run in TensorFlow's C++ on a thread (one session at a time)
    # while Keras's steps run here, in Python: their costs overlap.
    with ThreadPoolExecutor(1, thread_name_prefix="training-check") as pool:
        exported = {
            mode: pool.submit(_run_exported, build_dir, mode, signature_feeds)
            for mode in (c.EVAL, c.TRAIN)
            if mode in plan.modes
        }
        oracle = oracle_copy(model, plan, custom_objects)
        x, y = keras_batch(oracle, plan, feeds, targets)
        compared, gaps = [], {}
        for mode, future in exported.items():
            before = state_of(oracle)
            want = keras_step(oracle, mode, x, y)
            got, after = future.result()
            try:
                gaps[mode] = _compare_logs(mode, got, want, tolerance)
                if after is not None:
                    gaps[mode] = max(gaps[mode], _compare_variables(after, oracle, tolerance))
            except VerificationError as exc:
                reason = not_deterministic(model, plan, custom_objects, x, y, before, oracle)
                if mode != c.TRAIN or reason is None:
                    raise
                return TrainingCheck(
                    gaps.get(c.EVAL), None, tuple(compared), None, f"{reason}; {exc}"
                )
            compared.append(mode)
    return TrainingCheck(gaps.get(c.EVAL), gaps.get(c.TRAIN), tuple(compared))


def _run_exported(build_dir: str, mode: str, feeds: Mapping[str, np.ndarray]):
    """The exported signature's outputs and, for train, the variables after its step."""
    if mode == c.TRAIN:
        return run_train_step(build_dir, feeds)
    return run_signature(build_dir, mode, feeds), None


def synthesize_targets(
    infos: tuple[TensorInfo, ...], feeds: Mapping[str, np.ndarray]
) -> dict[TensorInfo, np.ndarray]:
    """One target array per target input, for the golden batch (see the docstring)."""
    n = len(next(iter(feeds.values())))
    rng = np.random.default_rng(SEED)
    targets = {}
    for info in infos:
        shape = [n if i == 0 else (d or 3) for i, d in enumerate(info.shape)]
        dtype = tf.as_dtype(info.dtype)
        if dtype.is_floating:
            value = rng.uniform(0.0, 1.0, shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            value = rng.integers(0, 2, shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            value = rng.integers(0, 2, shape).astype(bool)
        else:
            value = np.full(shape, b"", dtype=object)
        targets[info] = value
    return targets


def _target_infos(build_dir: str) -> tuple[TensorInfo, ...]:
    from export_core.artifacts.saved_model import describe_saved_model

    for meta_graph in describe_saved_model(build_dir)["meta_graphs"]:
        for key in (c.SIGNATURE_KEYS[c.EVAL], c.SIGNATURE_KEYS[c.TRAIN]):
            signature = meta_graph["signatures"].get(key)
            if signature is not None:
                inputs = [TensorInfo.from_dict(t) for t in signature["inputs"]]
                return tuple(t for t in inputs if t.name.endswith(c.TARGET_SUFFIX))
    raise VerificationError(f"{build_dir} has neither a train nor an eval MetaGraph.")


def run_signature(path: str, mode: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Loads one MetaGraph in a TF1 session and runs its signature once."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as sess:
        meta_graph = tf.compat.v1.saved_model.load(sess, list(c.TAGS[mode]), path)
        return _run(sess, meta_graph, mode, feeds)


def run_train_step(path: str, feeds: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    """One call of the train signature; its outputs and every variable afterwards, by
    checkpoint key, written by the MetaGraph's own TF1 save op (as a TF1 user saves)."""
    graph = tf.Graph()
    with tempfile.TemporaryDirectory(prefix="keras-export-train-") as folder:
        prefix = os.path.join(folder, "variables")
        with tf.compat.v1.Session(graph=graph) as sess:
            meta_graph = tf.compat.v1.saved_model.load(sess, list(c.TAGS[c.TRAIN]), path)
            outputs = _run(sess, meta_graph, c.TRAIN, feeds)
            saver = meta_graph.saver_def
            sess.run(saver.save_tensor_name, {saver.filename_tensor_name: prefix})
        reader = tf.train.load_checkpoint(prefix)
        variables = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    return outputs, variables


def _run(sess: Any, meta_graph: Any, mode: str, feeds: Mapping[str, np.ndarray]) -> dict:
    signature = meta_graph.signature_def[c.SIGNATURE_KEYS[mode]]
    fetches = {k: v.name for k, v in signature.outputs.items()}
    return sess.run(fetches, {signature.inputs[k].name: v for k, v in feeds.items()})


def _compare_logs(mode: str, got: Mapping, want: Mapping, tolerance: float) -> float:
    gap = 0.0
    for name, value in want.items():
        key = c.LOSS_KEY if name == c.LOSS_KEY else f"metrics/{name}/value"
        if key not in got:
            raise VerificationError(
                f"{mode}: Keras reports '{name}', which the exported '{mode}' signature "
                f"does not output ({sorted(got)}). Nothing was published."
            )
        gap = max(gap, _check_values(f"{mode}: {name}", got[key], value, tolerance))
    return gap


def _compare_variables(saved: Mapping[str, np.ndarray], oracle: keras.Model, tolerance: float):
    gap = 0.0
    for group, variables in variable_groups(oracle).items():
        for i, variable in enumerate(variables):
            key = f"{group}/{i}/.ATTRIBUTES/VARIABLE_VALUE"
            if key not in saved:
                raise VerificationError(
                    f"train: the exported train graph has no variable '{key}' for "
                    f"{variable.path}. Nothing was published."
                )
            want = keras.ops.convert_to_numpy(variable.value)
            what = f"train: {variable.path} after one step"
            gap = max(gap, _check_values(what, saved[key], want, tolerance))
    return gap


def _check_values(what: str, got: Any, want: Any, tolerance: float) -> float:
    have, expected = np.asarray(got), np.asarray(want)
    if have.shape != expected.shape:
        raise VerificationError(
            f"{what}: the exported graph gives shape {have.shape}, Keras {expected.shape}. "
            "Nothing was published."
        )
    if have.dtype.kind not in "fc" and expected.dtype.kind not in "fc":
        if not np.array_equal(have, expected):
            raise VerificationError(
                f"{what}: the exported graph gives {have.ravel()[:4]}, Keras "
                f"{expected.ravel()[:4]}. Nothing was published."
            )
        return 0.0
    a, b = have.astype(np.float64), expected.astype(np.float64)
    if not np.allclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True):
        worst = float(np.nanmax(np.abs(a - b)))
        raise VerificationError(
            f"{what} differs from Keras's own step: max |diff| {worst:.3g} (tolerance "
            f"rtol=atol={tolerance:.3g}; exported {a.ravel()[:3]}, Keras {b.ravel()[:3]}). "
            "The exported graph does not do what Keras does; nothing was published."
        )
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a - b)[both].max(initial=0.0))


__all__ = ["TrainingCheck", "check_training", "should_check"]
