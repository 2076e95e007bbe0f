"""Step 2, clone-per-mode: one independent copy of the model for each mode.

Each mode is traced from its own clone, so tracing the train step (which builds
optimizer slots and metric variables and runs layers in training mode) can never
touch the caller's model or another mode's graph. Clones carry the caller's
weights and, for training, the optimizer's state (iteration count, Adam moments,
...), sharing the caller's variables (``shared_state``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import keras

from export_core import constants as c
from export_core.errors import (
    CustomObjectError,
    missing_custom_object_message,
)
from export_core.model.layer_state import copy_layer_state
from export_core.model.shared_state import copy_optimizer_state, copy_weights
from export_core.model.training_setup import copy_optimizer
from export_core.steps.validate import ExportPlan
from export_core.tf_internals import tf_private
from export_core.tf_internals.tf_private import Functional, SafeModeScope

log = logging.getLogger(__name__)


def clone_for_mode(
    model: keras.Model,
    plan: ExportPlan,
    mode: str,
    custom_objects: Mapping[str, Any] | None = None,
    share: bool = True,
) -> keras.Model:
    """One mode's own clone of ``model`` holding its current state; a train clone also
    serves eval (and is compiled as the model was).

    Raises:
        CustomObjectError: The model's config names a class or function that is not
            registered and not in ``custom_objects``.
        ExportValidationError: The clone does not have the model's variables.

    ``share=False`` makes a clone with copies of the model's state instead of its
    variables: one that may run (``training_check`` trains it a step)."""
    if not plan.cloneable:
        # Cannot be rebuilt from a config: serving-only, traced as is. Tracing
        # model(x, training=False) reads the model; it changes no state.
        return model
    # The serving graph needs no optimizer: its clone is not compiled, which
    # spares building the optimizer's slots (Adam: two per weight).
    clone, deferred = _clone(model, plan, custom_objects, mode != c.SERVE, share)
    if mode != c.SERVE:
        copy_optimizer_state(model, clone, deferred, share)
    return clone


def _clone(
    model: keras.Model,
    plan: ExportPlan,
    custom_objects: Mapping[str, Any] | None,
    compile: bool = True,  # noqa: A002 - Keras's own name for it
    share: bool = True,
):
    # Layers made without an explicit dtype take the global dtype policy, which is
    # per thread (a Prefect task's thread, a fresh process, a script that set it back):
    # the clone is made under the model's own policy, as the model was.
    with _dtype_policy(model), _trusted(model, custom_objects):
        # The caller's own in-memory model is trusted code: a Lambda layer in it
        # must clone. (Loading a config from disk stays in safe mode, see load.py.)
        clone = _clone_with_zero_init(model) or keras.models.clone_model(model)
    if not clone.built:
        copy_layer_state(model, clone, built=False)  # vocabularies before the first call
        clone(plan.inputs.zeros())
    # Layer state first: load_own_variables assigns into the clone's own
    # variables, which must not yet be the model's (see shared_state). Compiling
    # comes last: it builds the optimizer, keyed by the variables it then holds.
    copy_layer_state(model, clone)
    copy_weights(model, clone, share)
    deferred = []
    if compile and model.compiled:  # again if clone_model compiled it: see above
        with _dtype_policy(model):
            deferred = _compile(model, clone, custom_objects)
    return clone, deferred


@contextlib.contextmanager
def _dtype_policy(model: keras.Model) -> Iterator[None]:
    """The model's dtype policy as this thread's global one, for as long as it runs."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(model.dtype_policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


@contextlib.contextmanager
def _trusted(model: keras.Model, custom_objects: Mapping | None) -> Iterator[None]:
    """The caller's custom objects, out of safe mode; a missing one reported clearly."""
    try:
        with keras.saving.custom_object_scope(dict(custom_objects or {})), SafeModeScope(False):
            yield
    except (TypeError, ValueError) as exc:
        raise CustomObjectError(
            missing_custom_object_message(f"Model '{model.name}'", exc)
        ) from exc


def _compile(model: keras.Model, clone: keras.Model, custom_objects: Mapping | None) -> list:
    """Compiles ``clone`` as ``model`` was; returns the variables left deferred.

    The clone's optimizer is a copy of the model's own, wrapper included (compile
    wraps the optimizer in a ``LossScaleOptimizer`` under ``mixed_float16``; the
    compile config holds the one before wrapping): its variables then correspond
    one to one with the model's.

    Compiling builds the clone's optimizer. When the caller's optimizer has its
    slots already (a trained model), the clone takes those
    (``shared_state.copy_optimizer_state``), and building the normal way would first
    fill as much memory with zeros (Adam: twice the weights), which TensorFlow's CPU
    allocator then keeps: a trained 100M-parameter Dense model peaked 860 MB higher.
    So the clone's optimizer is built with its variables created but not allocated
    (``tf_private.deferred_variables``); an optimizer whose build needs real values
    is built again the normal way.
    """
    config = model.get_compile_config()
    if not _keras_compile(clone):
        with _trusted(model, custom_objects):
            clone.compile_from_config(config)  # the class's own way
        return []

    def compile_clone() -> None:
        with _trusted(model, custom_objects):
            options = keras.saving.deserialize_keras_object(config)
            options["optimizer"] = copy_optimizer(model)
            clone.compile(**options, auto_scale_loss=False)

    compile_clone()
    if not clone.built:
        return []
    if not getattr(model.optimizer, "built", False):
        clone.optimizer.build(clone.trainable_variables)
        return []
    try:
        with tf_private.deferred_variables() as created:
            clone.optimizer.build(clone.trainable_variables)
        return created
    except (TypeError, ValueError, AttributeError):
        compile_clone()  # a fresh optimizer, built the normal way
        clone.optimizer.build(clone.trainable_variables)
        return []


def _keras_compile(clone: keras.Model) -> bool:
    """Whether the clone compiles with Keras's own ``compile``/``compile_from_config``."""
    return (
        type(clone).compile is keras.Model.compile
        and type(clone).compile_from_config is keras.Model.compile_from_config
    )


def _clone_with_zero_init(model: keras.Model) -> keras.Model | None:
    """Clones a Functional or Sequential model whose layers start from zeros.

    Every weight is overwritten by the model's own right after, so drawing random
    initial values (glorot, he...) is wasted work: 3 clones of a 100M-parameter
    Dense model spent 4.4 of 5.6 s in their initializers. Each layer is rebuilt
    from its config with every ``*_initializer`` set to zeros. Anything else (a
    subclass, or a layer that rejects the change) returns None: the caller clones
    the usual way, which behaves exactly as before.

    The zeros are allocated (unlike the optimizer's, see ``_compile``): measured,
    creating them deferred left the first restore of verification to fault in as
    much fresh memory, which cost more time than filling zeros (dense1g
    serving-only, 2 s more) for the same peak.
    """
    if type(model) not in (Functional, keras.Sequential):
        return None
    try:
        # from_config, not clone_model: clone_model also compiles the clone, which
        # builds an optimizer (Adam: two slots per weight) that is discarded.
        return type(model).from_config(_zero_initializers(model.get_config()))
    except Exception:  # noqa: BLE001 - any failure here means "clone normally"
        return None


def _zero_initializers(config: Any) -> Any:
    if isinstance(config, dict):
        return {
            key: "zeros"
            if key.endswith("_initializer") and isinstance(value, str | dict)
            else _zero_initializers(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_zero_initializers(value) for value in config]
    return config
