"""What a model's training setup must allow for its train and eval graphs, checked at validation.

The train and eval MetaGraphs are traced from a clone compiled as the model was:
with a copy of its optimizer (class and config, a ``LossScaleOptimizer`` wrapper
included) and its compile options. A setup that cannot be rebuilt that way is
refused before anything is written, naming what stands in the way, instead of
failing half-way through cloning.
"""

from __future__ import annotations

from typing import Any

import keras

from export_core.errors import UnsupportedModelError

SERVE_ONLY = "or export the serving graph only: modes=('serve',) (CLI --serving-only)"


def copy_optimizer(model: keras.Model) -> Any:
    """A new optimizer configured as the model's (its class and config, wrapper included).

    Raises:
        UnsupportedModelError: The optimizer cannot be rebuilt from its config.
    """
    optimizer = model.optimizer
    try:
        config = keras.saving.serialize_keras_object(optimizer)
        return keras.saving.deserialize_keras_object(config)
    except Exception as exc:  # noqa: BLE001 - any failure: it cannot be rebuilt
        raise UnsupportedModelError(
            f"The optimizer of model '{model.name}' ({type(optimizer).__name__}) cannot be "
            f"rebuilt from its config ({type(exc).__name__}: {exc}), which the train and "
            "eval graphs need. Give it a serializable config (e.g. a MultiOptimizer with an "
            "OptimizerMap rather than a function; custom classes registered with "
            f"@keras.saving.register_keras_serializable()), {SERVE_ONLY}."
        ) from exc


def check_training_setup(model: keras.Model) -> None:
    """Refuses, by name, a compiled model whose clone could not be compiled as it was.

    Raises:
        UnsupportedModelError: The class overrides ``compile`` without
            ``compile_from_config``, or the optimizer cannot be rebuilt.
    """
    compiles = _user_override(model, "compile")
    if compiles and not _user_override(model, "compile_from_config"):
        raise UnsupportedModelError(
            f"Model '{model.name}' overrides {compiles}.compile() but not "
            "compile_from_config(), so its clone cannot be compiled the way it was, "
            "which the train and eval graphs need. Implement "
            f"{compiles}.compile_from_config(config) (and get_compile_config()), {SERVE_ONLY}."
        )
    copy_optimizer(model)


def _user_override(model: keras.Model, method: str) -> str | None:
    """The name of the user class that overrides ``method`` of Keras's Model, or None."""
    for cls in type(model).__mro__:
        if cls.__module__.split(".")[0] == "keras":
            return None
        if method in vars(cls):
            return cls.__qualname__
    return None
