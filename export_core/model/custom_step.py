"""A model's own ``train_step``/``test_step``, honoured in the train and eval graphs.

Keras runs ``fit()`` through ``Model.train_step`` and ``evaluate()`` through
``Model.test_step``. A model class that overrides one of them trains (or
evaluates) its own way: a different loss, several optimizers, extra metrics.
Exporting the default step instead would be a silent wrong training graph, so a
mode whose step is overridden is traced by calling that method, as Keras's own
``make_train_function`` does (a ``tf.function`` with AutoGraph, the TensorFlow
backend), on ``(x, y)``. Its returned logs become the signature's outputs:
``loss`` and ``metrics/<name>/value`` (and ``update_op``, as the original API
named them). A step that cannot be traced is refused, naming the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from export_core import constants as c
from export_core.errors import UnsupportedModelError

STEP_METHODS = {c.TRAIN: "train_step", c.EVAL: "test_step"}


def overridden_step(model: keras.Model, mode: str) -> str | None:
    """``"Class.train_step"`` when a user class overrides the mode's step, else None."""
    method = STEP_METHODS.get(mode)
    if method is None:
        return None
    for cls in type(model).__mro__:
        if cls.__module__.split(".")[0] == "keras":
            return None
        if method in vars(cls):
            return f"{cls.__qualname__}.{method}"
    return None


def run_custom_step(model: keras.Model, mode: str, x: Any, y: Any) -> dict[str, tf.Tensor]:
    """Calls the model's own step on ``(x, y)``; returns the signature's outputs."""
    logs = getattr(model, STEP_METHODS[mode])((x, y))
    if not isinstance(logs, Mapping) or not logs:
        raise TypeError(
            f"{STEP_METHODS[mode]} returned {type(logs).__name__}; Keras expects a dict "
            "of metric names to values, e.g. {'loss': loss}"
        )
    out: dict[str, tf.Tensor] = {}
    for name, value in flat_logs(logs):
        tensor = tf.convert_to_tensor(value)
        if name == c.LOSS_KEY:
            out[c.LOSS_KEY] = tensor
        else:
            out[f"metrics/{name}/value"] = tensor
            out[f"metrics/{name}/update_op"] = tensor
    return out


def flat_logs(logs: Mapping[str, Any], prefix: str = ""):
    """``(name, value)`` of a step's logs, nested ones named ``a/b``."""
    for key, value in logs.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flat_logs(value, f"{name}/")
        else:
            yield name, value


def refuse_custom_step(model: keras.Model, mode: str, step: str, exc: Exception):
    """The error for a custom step that cannot be traced into a graph."""
    return UnsupportedModelError(
        f"Model '{model.name}' overrides {step}, which the '{mode}' graph must run, but "
        f"it cannot be traced as a tf.function on the TensorFlow backend "
        f"({type(exc).__name__}: {_last_line(exc)}). The exporter never substitutes "
        "Keras's default step for it. Make the method traceable (TensorFlow ops, no "
        ".numpy()), or export the serving graph only: modes=('serve',) (serving_only=True, "
        "CLI --serving-only)."
    )


def _last_line(exc: Exception) -> str:
    """AutoGraph wraps the cause in a stack listing; its last line names the cause."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
