"""Parity: how the loaded SavedModel's outputs are compared with the reference.

Floating outputs must agree to rtol=atol=``tolerance`` (NaN equal to NaN): 1e-5 for
a model computing in float32, a few units in the last place of the compute dtype
for mixed precision (``tolerance_for``), since TensorFlow's graph kernels (oneDNN
fusions) round float16/bfloat16 differently from eager ones. Integer outputs must
agree exactly, text outputs byte for byte, shapes always. ``compare`` returns the
largest absolute difference per output over every loader, for the manifest.
"""

from __future__ import annotations

import numpy as np

from export_core.artifacts.golden import as_bytes_array, is_text
from export_core.errors import VerificationError

RTOL = ATOL = 1e-5
# Four units in the last place of each reduced-precision compute dtype.
LOW_PRECISION = {"float16": 4 * 2.0**-10, "bfloat16": 4 * 2.0**-7}


def tolerance_for(compute_dtypes: set[str]) -> float:
    """The rtol = atol for outputs of a model whose layers compute in these dtypes."""
    return max([RTOL] + [LOW_PRECISION.get(d, RTOL) for d in compute_dtypes])


def compare(expected: dict, results: dict, tolerance: float = RTOL) -> dict[str, float]:
    diffs: dict[str, float] = {}
    for loader, got in results.items():
        for name, want in expected.items():
            if name not in got:
                raise VerificationError(f"{loader}: serving output '{name}' is missing.")
            diff = _difference(np.asarray(got[name]), np.asarray(want), tolerance)
            if diff is not None:
                raise VerificationError(
                    f"{loader}: serving output '{name}' differs from the in-memory model "
                    f"({diff}, tolerance rtol=atol={tolerance:.3g}). The version was not "
                    "published."
                )
            have = np.asarray(got[name])
            gap = 0.0 if is_text(have) else float(_abs_diff(have, want).max(initial=0))
            diffs[name] = max(diffs.get(name, 0.0), gap)
    return diffs


def _difference(have: np.ndarray, want: np.ndarray, tolerance: float = RTOL) -> str | None:
    """Why ``have`` does not match ``want``, or None when it does."""
    if have.shape != want.shape:
        return f"shapes {have.shape} vs {want.shape}"
    if is_text(have) or is_text(want):
        same = np.array_equal(as_bytes_array(have), as_bytes_array(want))
        return None if same else "string values differ"
    if want.dtype.kind in "biu" and not np.array_equal(have, want):
        return f"max |diff| {_abs_diff(have, want).max():.3g}, exact match required"
    if np.allclose(have, want, rtol=tolerance, atol=tolerance, equal_nan=True):
        return None
    return f"max |diff| {_abs_diff(have, want).max():.3g}, shapes {have.shape} vs {want.shape}"


def _abs_diff(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(have.astype(np.float64) - want.astype(np.float64))
