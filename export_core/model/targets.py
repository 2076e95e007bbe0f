"""The train and eval signatures' targets: one per model output, shaped for its loss.

Keras losses take targets shaped like the predictions, except those that take one
integer label per example (``sparse_categorical_crossentropy``, Circle...) and CTC's
label sequences; ``target_info`` names and shapes each ``<output>_target`` input
accordingly, and ``pack_targets`` arranges targets in the structure of the model's
outputs, which is what ``compute_loss`` expects.
"""

from __future__ import annotations

from typing import Any

import keras

from export_core import constants as c
from export_core.model.signature import TensorInfo


def target_info(model: keras.Model, index: int, prediction: TensorInfo) -> TensorInfo:
    """The ``<output>_target`` input: shaped like the prediction, except for losses
    that take one integer label per example (``SPARSE_LABEL_LOSSES``, or a custom
    loss whose name says "sparse") and CTC's label sequences."""
    loss = model.loss
    if isinstance(loss, dict):
        loss = loss.get(prediction.name)
    elif isinstance(loss, list | tuple):
        loss = loss[index] if index < len(loss) else None
    name = loss_name(loss)
    shape = prediction.shape
    if name in SPARSE_LABEL_LOSSES or "sparse" in name:
        shape = shape[:-1]  # integer class ids, one per example
    elif name in SEQUENCE_LABEL_LOSSES:
        shape = (shape[0], None)  # label ids, one sequence per example
    return TensorInfo(prediction.name + c.TARGET_SUFFIX, shape, prediction.dtype)


# Keras losses whose targets are one class id per example, by canonical name.
SPARSE_LABEL_LOSSES = {
    "sparsecategoricalcrossentropy",
    "categoricalgeneralizedcrossentropy",
    "circle",
}


SEQUENCE_LABEL_LOSSES = {"ctc"}


def loss_name(loss: Any) -> str:
    """``"sparsecategoricalcrossentropy"`` for the class, its function or its string."""
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "__name__", None) or type(loss).__name__
        wrapped = getattr(loss, "fn", None)  # a LossFunctionWrapper names its function
        if type(loss).__name__ == "LossFunctionWrapper" and wrapped is not None:
            name = getattr(wrapped, "__name__", name)
    return name.replace("_", "").lower()


def pack_targets(model: keras.Model, names: list[str], flat: list[Any]) -> Any:
    """Targets (or predictions) in the structure of the model's outputs, which is
    what ``compute_loss`` expects: one, a list, or a dict by output name."""
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict):
        return dict(zip(names, flat, strict=True))
    if len(flat) == 1 and not isinstance(struct, list | tuple):
        return flat[0]
    return list(flat)
