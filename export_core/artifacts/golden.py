"""Golden data: the inputs verification feeds and the outputs the model gave on them.

Written into each version as ``golden.npz`` before the build is staged, so the
version carries its own parity check: ``keras-export verify`` (or any reader)
can reload it later, anywhere, and compare against what the in-memory model
computed at export time. TensorFlow Serving ignores the file (it reads
``saved_model.pb``, ``variables/``, ``assets/`` and ``assets.extra/``).

Arrays are stored so that ``numpy.load(path)`` reads them without pickle:
``inputs/<name>`` and ``outputs/<name>``. Strings (``tf.string``, any bytes) are
stored exactly as a flat ``uint8`` buffer ``<key>.bytes`` plus the ``int64``
end offsets ``<key>.ends`` and the shape ``<key>.shape``; numpy's fixed-width
``S`` arrays would drop trailing NUL bytes (common in serialized protos).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from export_core import constants as c
from export_core.errors import writing_into

INPUTS, OUTPUTS = "inputs/", "outputs/"
BYTES, ENDS, SHAPE = ".bytes", ".ends", ".shape"


@dataclass(frozen=True)
class Golden:
    """Named input arrays, the reference output arrays, and where the inputs came from."""

    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]
    synthesized: bool = True
    tolerance: float = 1e-5  # rtol = atol the outputs are compared with (see parity)


def is_text(array: np.ndarray) -> bool:
    return array.dtype.kind in "OSU"


def as_bytes_array(array: np.ndarray) -> np.ndarray:
    """Strings as an object array of ``bytes`` (what TensorFlow feeds as tf.string)."""
    flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.ravel()]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(array.shape)


def write_golden(folder: str, golden: Golden) -> str:
    """Writes ``golden.npz`` into ``folder``; returns its relative path."""
    arrays: dict[str, np.ndarray] = {}
    for prefix, group in ((INPUTS, golden.inputs), (OUTPUTS, golden.outputs)):
        for name, value in group.items():
            arrays.update(_encode(prefix + name, np.asarray(value)))
    arrays["synthesized"] = np.asarray(golden.synthesized)
    arrays["tolerance"] = np.asarray(golden.tolerance, np.float64)
    with writing_into(folder), open(os.path.join(folder, c.GOLDEN), "wb") as handle:
        np.savez(handle, **arrays)
    return c.GOLDEN


def read_golden(folder: str) -> Golden | None:
    """Reads ``golden.npz`` from a local SavedModel folder, None when it has none."""
    path = os.path.join(folder, c.GOLDEN)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return load_golden(handle.read())


def load_golden(data: bytes) -> Golden:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    groups: dict[str, dict[str, np.ndarray]] = {INPUTS: {}, OUTPUTS: {}}
    for key in arrays:
        for prefix, group in groups.items():
            if key.startswith(prefix) and not key.endswith((ENDS, SHAPE)):
                name = key[len(prefix) :].removesuffix(BYTES)
                group[name] = _decode(arrays, prefix + name)
    synthesized = bool(arrays.get("synthesized", np.asarray(True)))
    tolerance = float(arrays.get("tolerance", np.asarray(1e-5)))
    return Golden(groups[INPUTS], groups[OUTPUTS], synthesized, tolerance)


def _encode(key: str, array: np.ndarray) -> dict[str, np.ndarray]:
    if not is_text(array):
        return {key: array}
    values = as_bytes_array(array).ravel()
    ends = np.cumsum([len(v) for v in values], dtype=np.int64)
    buffer = np.frombuffer(b"".join(values), dtype=np.uint8)
    return {key + BYTES: buffer, key + ENDS: ends, key + SHAPE: np.asarray(array.shape, np.int64)}


def _decode(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    if key in arrays:
        return arrays[key]
    raw = arrays[key + BYTES].tobytes()
    ends = arrays[key + ENDS].tolist()
    starts = [0, *ends[:-1]]
    out = np.empty(len(ends), dtype=object)
    out[:] = [raw[s:e] for s, e in zip(starts, ends, strict=True)]
    return out.reshape(tuple(arrays[key + SHAPE].tolist()))
