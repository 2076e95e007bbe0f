"""Options checked before any work: modes, custom objects, storage options, signatures.

Each refuses a malformed value with what was received and an example of a good one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from export_core.constants import MODES, SERVE
from export_core.errors import ExportValidationError

DTYPES = {
    "bfloat16", "bool", "complex128", "complex64", "double", "float", "float16", "float32",
    "float64", "half", "int16", "int32", "int64", "int8", "string", "uint16", "uint32",
    "uint64", "uint8",
}  # fmt: skip


def check_keep(value: Any, name: str = "keep_versions") -> int | None:
    """One rule everywhere: None (keep all) or a whole number >= 1.

    Raises:
        ExportValidationError: Anything else (0 would delete the version just
            published, a negative number means nothing).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExportValidationError(
            f"{name} must be a whole number >= 1 (how many of the newest complete versions "
            f"to keep), received {value!r}. Leave it unset to keep every version."
        )
    return value


def check_modes(modes: Any, serving_only: bool = False) -> tuple[str, ...] | None:
    """The modes asked for (``serving_only`` is ``modes=("serve",)``), None for the default.

    Accepts the tags (``serve``, ``train``, ``eval``) and the words ``serving``,
    ``training``, ``evaluation``, as a list or a comma-separated string.

    Raises:
        ExportValidationError: An unknown mode, or modes without ``serve``.
    """
    if modes is None:
        return (SERVE,) if serving_only else None
    names = [m.strip() for m in modes.split(",")] if isinstance(modes, str) else list(modes)
    unknown = [m for m in names if str(m).lower() not in MODE_ALIASES]
    if unknown or not names:
        raise ExportValidationError(
            f"modes must name some of 'serve', 'train', 'eval' (or 'serving', 'training', "
            f"'evaluation'); received {list(names)!r}"
            + (f", of which {unknown!r} are none" if unknown else "")
            + ". Example: modes=('serve',), CLI --modes serve,eval."
        )
    chosen = {MODE_ALIASES[str(m).lower()] for m in names}
    if SERVE not in chosen:
        raise ExportValidationError(
            f"modes {list(names)!r} lack 'serve': every export holds the serving graph "
            "(its outputs name the train and eval signatures' targets). Add 'serve'."
        )
    if serving_only and chosen != {SERVE}:
        raise ExportValidationError(
            f"serving_only=True contradicts modes={list(names)!r}; pass one of them."
        )
    return tuple(m for m in MODES if m in chosen)


MODE_ALIASES = {
    **{m: m for m in MODES},
    "serving": "serve",
    "predict": "serve",
    "training": "train",
    "evaluation": "eval",
    "evaluate": "eval",
}


def check_custom_object_paths(paths: Any) -> None:
    """``"pkg.module:NAME"`` strings whose module can be found (not yet imported).

    Raises:
        ExportValidationError: A malformed path, or a module that cannot be found.
    """
    import importlib.util

    for path in paths or []:
        module, _, name = str(path).partition(":")
        if not module or not name or not name.isidentifier():
            raise ExportValidationError(
                f"custom object {path!r} is not 'package.module:NAME', e.g. "
                "'my_project.layers:Swish6'."
            )
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise ExportValidationError(
                f"custom object {path!r}: no module '{module}' can be imported here. Install "
                "the package that defines it or fix the path (PYTHONPATH)."
            )


def check_storage_options(options: Any, name: str = "storage_options") -> dict | None:
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ExportValidationError(
            f"{name} must be a JSON object of fsspec options, e.g. "
            f'{{"endpoint_url": "http://127.0.0.1:9000"}}; received {type(options).__name__}.'
        )
    return dict(options)


def check_signature_json(specs: Any) -> None:
    """``[{"shape": [null, 3], "dtype": "float32", "name": "x"}, ...]``."""
    if specs is None:
        return
    if isinstance(specs, Mapping):
        specs = [specs]
    if not isinstance(specs, list) or not specs:
        raise ExportValidationError(
            "input_signature must be a list of {shape, dtype, name} objects, e.g. "
            f'[{{"shape": [null, 3], "dtype": "float32", "name": "x"}}]; received {specs!r}.'
        )
    for i, spec in enumerate(specs):
        shape = spec.get("shape") if isinstance(spec, Mapping) else None
        if not isinstance(shape, list) or not all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape
        ):
            raise ExportValidationError(
                f'input_signature[{i}] needs "shape": a list of sizes or null, e.g. '
                f"[null, 3]; received {spec!r}."
            )
        dtype = spec.get("dtype", "float32")
        if dtype not in DTYPES:
            raise ExportValidationError(
                f"input_signature[{i}] has dtype {dtype!r}, which is not a TensorFlow dtype; "
                f"use one of {', '.join(sorted(DTYPES))}."
            )
        if "name" in spec and not isinstance(spec["name"], str):
            raise ExportValidationError(f"input_signature[{i}] name must be a string.")


def parse_json(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportValidationError(
            f"{name} is not valid JSON ({exc.msg} at character {exc.pos}): {text!r}."
        ) from exc
