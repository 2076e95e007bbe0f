"""How a clone takes the caller's variables: shared, not copied, wherever it can.

A clone's weights and optimizer variables take the caller's backing ``tf.Variable``
(``tf_private.share_backing_variable``): tracing only captures variables (the
graphs are never run here), and the checkpoint written from them holds exactly
the caller's values, with no second copy in memory. Where sharing would change
what the exported graph records about a variable, its value is copied instead.
Variables the clone created deferred (``tf_private.deferred_variables``) are
never allocated when shared.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from export_core.errors import ExportValidationError
from export_core.tf_internals import tf_private


def copy_weights(model: keras.Model, clone: keras.Model, share: bool = True) -> None:
    """Gives the clone the model's variables (``share=False``: copies of them).

    Every variable, not only the weights: the state of each layer's random seed
    generator too (Dropout, GaussianNoise...), so that the train graph draws the
    masks Keras's next step on the model would draw.

    Raises:
        ExportValidationError: The clone does not have the model's variables.
    """
    source, target = model.variables, clone.variables
    shapes = [tuple(v.shape) for v in source]
    if shapes != [tuple(v.shape) for v in target]:
        raise ExportValidationError(
            f"The clone of model '{model.name}' has different variables than the model "
            f"({len(target)} vs {len(source)}). A subclassed model's get_config()/"
            "from_config() must rebuild the same layers in the same order."
        )
    # The clone reads the model's own variables: no copy of the weights. Tracing
    # only captures them (graphs are never run here), and the checkpoint written
    # from them holds exactly the model's values.
    _take(zip(source, target, strict=True), [], share)


def _take(pairs: Any, deferred: list, share: bool = True) -> None:
    """Gives each ``dst`` its ``src``'s value: shared where nothing the graph records
    would change, else copied (always copied unless ``share``). A deferred ``dst`` that
    is not shared is allocated first; deferred variables without a ``src`` are
    allocated from their initializer."""
    pending = {id(v) for v in deferred}
    for src, dst in pairs:
        if id(dst) in pending:
            pending.discard(id(dst))
            if share and _can_share_deferred(src, dst):
                tf_private.share_backing_variable(dst, src)
                continue
            tf_private.initialize_deferred(dst)
        if share and _can_share(src, dst):
            tf_private.share_backing_variable(dst, src)
        else:
            dst.assign(src.value)
    for variable in deferred:
        if id(variable) in pending:
            tf_private.initialize_deferred(variable)


def _can_share(src: Any, dst: Any) -> bool:
    """Whether ``dst`` can take ``src``'s backing ``tf.Variable`` as its own.

    Only when nothing the exported graph records about the variable would change:
    its type, dtype, shape, trainability, aggregation and synchronization.
    """
    a, b = getattr(src, "value", None), getattr(dst, "value", None)
    if not isinstance(a, tf.Variable) or not isinstance(b, tf.Variable):
        return False
    if type(a) is not type(b) and not (
        tf_private.is_plain_variable(a) and tf_private.is_plain_variable(b)
    ):
        return False
    return (
        a.dtype == b.dtype
        and tuple(a.shape) == tuple(b.shape)
        and a.trainable == b.trainable
        and a.aggregation == b.aggregation
        and a.synchronization == b.synchronization
    )


def copy_optimizer_state(
    model: keras.Model, clone: keras.Model, deferred: list, share: bool = True
) -> None:
    """Builds the clone's optimizer and gives it the caller's optimizer variables.

    An optimizer that never stepped has no slots yet; the clone then starts from
    zeros too, exactly as the caller's would on its first step. ``deferred`` are
    the clone's variables compiling left unallocated (see ``clone._compile``): each
    takes the caller's variable, or else is allocated from its initializer.
    """
    optimizer = clone.optimizer
    source = model.optimizer
    if not optimizer.built:
        optimizer.build(clone.trainable_variables)
    if not source.built:
        counters = (tf_private.iteration_counter(source), tf_private.iteration_counter(optimizer))
        pairs = [counters]
    else:
        theirs, ours = optimizer_state(model), optimizer_state(clone)
        if [tuple(v.shape) for v in theirs] != [tuple(v.shape) for v in ours]:
            raise ExportValidationError(
                f"The optimizer of model '{model.name}' ({type(source).__name__}) holds "
                "variables that its clone does not; export with serving_only=True."
            )
        pairs = list(zip(theirs, ours, strict=True))
    _take(pairs, deferred, share)  # shared like the weights (see copy_weights)


def optimizer_state(model: keras.Model) -> list:
    """Every variable of the model's optimizer: ``optimizer.variables``, then those it
    holds without listing them (``tf_private.untracked_optimizer_variables``)."""
    optimizer = model.optimizer
    return list(optimizer.variables) + tf_private.untracked_optimizer_variables(optimizer)


def _can_share_deferred(src: Any, dst: Any) -> bool:
    """``_can_share`` for a ``dst`` not yet created in TensorFlow: the variable its
    creation would make (a plain one, outside any distribution strategy) must be
    like ``src``'s in everything ``_can_share`` compares."""
    a = getattr(src, "value", None)
    return (
        tf_private.is_plain_variable(a)
        and not tf.distribute.has_strategy()
        and src.dtype == dst.dtype
        and tuple(src.shape) == tuple(dst.shape)
        and src.trainable == dst.trainable
        and src.aggregation == dst.aggregation
        and src.synchronization == dst.synchronization
    )
