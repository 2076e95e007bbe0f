"""Parity: how the loaded SavedModel's outputs are compared with the reference.

Floating outputs must agree to rtol=atol=1e-5 (NaN equal to NaN), integer outputs
exactly, text outputs byte for byte; shapes always. ``compare`` returns the
largest absolute difference per output over every loader, for the manifest.
"""

from __future__ import annotations

import numpy as np

from export_core.errors import VerificationError
from export_core.golden import as_bytes_array, is_text

RTOL = ATOL = 1e-5


def compare(expected: dict, results: dict) -> dict[str, float]:
    diffs: dict[str, float] = {}
    for loader, got in results.items():
        for name, want in expected.items():
            if name not in got:
                raise VerificationError(f"{loader}: serving output '{name}' is missing.")
            diff = _difference(np.asarray(got[name]), np.asarray(want))
            if diff is not None:
                raise VerificationError(
                    f"{loader}: serving output '{name}' differs from the in-memory model "
                    f"({diff}, tolerance rtol=atol={RTOL}). The version was not published."
                )
            have = np.asarray(got[name])
            gap = 0.0 if is_text(have) else float(_abs_diff(have, want).max(initial=0))
            diffs[name] = max(diffs.get(name, 0.0), gap)
    return diffs


def _difference(have: np.ndarray, want: np.ndarray) -> str | None:
    """Why ``have`` does not match ``want``, or None when it does."""
    if have.shape != want.shape:
        return f"shapes {have.shape} vs {want.shape}"
    if is_text(have) or is_text(want):
        same = np.array_equal(as_bytes_array(have), as_bytes_array(want))
        return None if same else "string values differ"
    if want.dtype.kind in "biu" and not np.array_equal(have, want):
        return f"max |diff| {_abs_diff(have, want).max():.3g}, exact match required"
    if np.allclose(have, want, rtol=RTOL, atol=ATOL, equal_nan=True):
        return None
    return f"max |diff| {_abs_diff(have, want).max():.3g}, shapes {have.shape} vs {want.shape}"


def _abs_diff(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.abs(have.astype(np.float64) - want.astype(np.float64))
