"""Checks of what a caller gives against the model's inputs, before anything is traced.

An ``input_signature`` override must keep the rank and the known sizes of the
model's own inputs; golden ``sample_inputs`` must name every serving input with a
fitting shape and kind. Both fail with the input's name and both shapes, e.g.
"input 'x' expects shape (None, 3), got (2, 5)", instead of Keras's tracing errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from export_core.errors import ExportValidationError
from export_core.model.signature import InputSignature


def _fits(shape: Sequence[int | None], expected: Sequence[int | None]) -> bool:
    return len(shape) == len(expected) and all(
        a is None or b is None or a == b for a, b in zip(shape, expected, strict=True)
    )


def check_compatible(
    given: InputSignature, own: InputSignature, what: str, cast: bool = False
) -> InputSignature:
    """Each given input has the rank, the known sizes and the dtype of the model's own.

    A different dtype changes the serving contract (clients then send float64 to a
    float32 model, or int32): it is refused unless ``cast`` (``cast_inputs=True``,
    CLI ``--cast-inputs``) asks for the graphs to cast it to the model's dtype, which
    the manifest then records. Returns ``given``, with those casts when asked for.

    Raises:
        ExportValidationError: e.g. "input 'x' expects shape (None, 3), got (None, 3, 1)".
    """
    if len(given.tensors) != len(own.tensors):
        raise ExportValidationError(
            f"{what} has {len(given.tensors)} inputs; model expects {len(own.tensors)} "
            f"({', '.join(own.names)})."
        )
    casts: list[str | None] = []
    for mine, theirs in zip(given.tensors, own.tensors, strict=True):
        if not _fits(mine.shape, theirs.shape):
            raise ExportValidationError(
                f"{what}: input '{theirs.name}' expects shape {_shape(theirs.shape)}, got "
                f"{_shape(mine.shape)}. Fix the shape (None for the batch and any "
                "variable size)."
            )
        if mine.dtype == theirs.dtype:
            casts.append(None)
            continue
        castable = "string" not in (mine.dtype, theirs.dtype)
        if not (cast and castable):
            fix = f"Use dtype {theirs.dtype!r}"
            if castable:
                fix += (
                    f", or pass cast_inputs=True (CLI --cast-inputs) to accept {mine.dtype} "
                    f"and cast it to {theirs.dtype} in the graphs (recorded in the manifest)"
                )
            raise ExportValidationError(
                f"{what}: input '{theirs.name}' is {theirs.dtype} in the model, got "
                f"{mine.dtype}, which would change what clients must send. {fix}."
            )
        casts.append(theirs.dtype)
    return dataclasses.replace(given, casts=tuple(casts)) if any(casts) else given


def check_samples(signature: InputSignature, samples: Any) -> None:
    """Golden inputs name every serving input, with a fitting shape and kind.

    Raises:
        ExportValidationError: e.g. "input 'x' expects shape (None, 3), got (2, 5)".
    """
    arrays = (
        dict(samples)
        if isinstance(samples, Mapping)
        else dict(
            zip(
                signature.names,
                samples if isinstance(samples, list | tuple) else [samples],
                strict=False,
            )
        )
    )
    missing = [n for n in signature.names if n not in arrays]
    if missing or (not isinstance(samples, Mapping) and len(arrays) != len(signature.names)):
        raise ExportValidationError(
            f"sample_inputs must hold one array per serving input {list(signature.names)}; "
            f"missing {missing or 'some'} (found {sorted(arrays)})."
        )
    for info in signature.tensors:
        value = np.asarray(arrays[info.name])
        if not _fits(value.shape, info.shape):
            raise ExportValidationError(
                f"sample_inputs: input '{info.name}' expects shape {_shape(info.shape)}, got "
                f"{_shape(value.shape)}."
            )
        text, wanted = value.dtype.kind in "OSU", info.dtype == "string"
        if text != wanted:
            raise ExportValidationError(
                f"sample_inputs: input '{info.name}' is {info.dtype}, got a "
                f"{'text' if text else value.dtype.name} array."
            )


def _shape(shape: Sequence[int | None]) -> str:
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )
