"""The oracle the train and eval MetaGraphs are checked against: Keras's own steps.

Keras runs its compiled train (or test) function on a throwaway copy of the user's
model (``clone_for_mode(..., share=False)``: its own weights, optimizer state and
metrics, copied from the model's), never on the caller's model or optimizer. The
copy's optimizer must be of the model's class and configuration (a wrapper such as
``LossScaleOptimizer`` included), which ``oracle_copy`` asserts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from export_core import constants as c
from export_core.errors import VerificationError
from export_core.model.custom_step import flat_logs
from export_core.model.shared_state import optimizer_state
from export_core.model.signature import TensorInfo, output_names
from export_core.model.targets import pack_targets
from export_core.steps.clone import clone_for_mode
from export_core.steps.validate import ExportPlan


def keras_batch(
    oracle: keras.Model,
    plan: ExportPlan,
    feeds: Mapping[str, np.ndarray],
    targets: Mapping[TensorInfo, np.ndarray],
) -> tuple[Any, Any]:
    """The golden batch as Keras takes it: inputs and targets in the model's structures,
    as tensors (Keras's data adapters refuse numpy arrays of strings)."""
    x = plan.inputs.pack([tf.constant(feeds[n]) for n in plan.inputs.names])
    by_output = {t.name.removesuffix(c.TARGET_SUFFIX): v for t, v in targets.items()}
    predictions = _output_order(oracle, list(by_output))
    y = pack_targets(oracle, predictions, [tf.constant(by_output[n]) for n in predictions])
    return x, y


def keras_step(model: keras.Model, mode: str, x: Any, y: Any) -> dict[str, np.ndarray]:
    """One step of Keras's own compiled train (or test) function on ``(x, y)``, from
    zeroed metrics, as ``fit`` (``evaluate``) runs it: the batch arrives as ``(x, y)``,
    what a model's own ``train_step`` unpacks (``train_on_batch`` passes a third,
    empty sample weight). Returns the step's logs, flat (``a/b`` for nested ones).

    The compiled function, not an eager step (``run_eagerly``), although tracing it
    costs more (MobileNetV2: 6 s against 1 s): TensorFlow's graph kernels then agree
    with the exported graph's to 1e-7, where the eager ones moved MobileNetV2's first
    convolution 2e-4 apart after one Adam step (gradients near Adam's epsilon). For
    the same reason without XLA (``jit_compile``): the exported graph has none.
    """
    model.reset_metrics()  # the exported graphs start from zeroed metrics
    if model.run_eagerly or model.jit_compile:
        model.run_eagerly, model.jit_compile = False, False
        model.train_function = model.test_function = None
    if mode == c.TRAIN:
        model.make_train_function()
        logs = model.train_function(iter([(x, y)]))
    else:
        model.make_test_function()
        logs = model.test_function(iter([(x, y)]))
    return {name: np.asarray(value) for name, value in flat_logs(logs)}


def _output_order(model: keras.Model, names: list[str]) -> list[str]:
    """The outputs' names in the order the model returns them (signatures sort them)."""
    structure = getattr(model, "_outputs_struct", None)
    if structure is not None:
        ordered = output_names(model, structure)
        if sorted(ordered) == sorted(names):
            return ordered
    return sorted(
        names, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)]
    )


def oracle_copy(model: keras.Model, plan: ExportPlan, custom_objects: Mapping | None):
    """The model's throwaway copy, checked to carry the model's optimizer as configured."""
    oracle = clone_for_mode(model, plan, c.TRAIN, custom_objects, share=False)
    mine, theirs = oracle.optimizer, model.optimizer
    if type(mine) is not type(theirs) or _config(mine) != _config(theirs):
        raise VerificationError(
            f"The exporter's copy of model '{model.name}' has a {type(mine).__name__} "
            f"optimizer configured as {_config(mine)}, the model a {type(theirs).__name__} "
            f"configured as {_config(theirs)}: its train graph would not be the model's. "
            "This is a bug of the exporter; nothing was published."
        )
    return oracle


def _config(optimizer: Any) -> Any:
    try:
        return keras.saving.serialize_keras_object(optimizer)
    except Exception:  # noqa: BLE001 - compared by type alone then
        return None


def variable_groups(model: keras.Model) -> dict[str, list]:
    return {c.MODEL_VARIABLES: list(model.variables), c.OPTIMIZER_VARIABLES: optimizer_state(model)}


def state_of(model: keras.Model) -> list[np.ndarray]:
    return [
        keras.ops.convert_to_numpy(v.value) for vs in variable_groups(model).values() for v in vs
    ]


def not_deterministic(
    model: keras.Model,
    plan: ExportPlan,
    custom_objects: Mapping | None,
    x: Any,
    y: Any,
    before: list[np.ndarray],
    first: keras.Model,
) -> str | None:
    """Why Keras's own step cannot be the oracle (it gives another result on a second
    copy in the same state), or None when it is reproducible."""
    second = oracle_copy(model, plan, custom_objects)
    if any(not np.array_equal(a, b) for a, b in zip(before, state_of(second), strict=True)):
        return None  # not the same start: compare as it is
    keras_step(second, c.TRAIN, x, y)
    again = state_of(second)
    for a, b in zip(state_of(first), again, strict=True):
        if not np.allclose(a, b, rtol=1e-6, atol=1e-7, equal_nan=True):
            return (
                "train: not comparable: Keras's own train step gives different results "
                "from the same state (a layer draws random numbers not seeded by Keras's "
                "seed generators)"
            )
    return None
