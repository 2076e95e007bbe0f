"""Checks that need neither TensorFlow nor Prefect: run first, fail in well under a second.

The CLI runs them before it starts Prefect's API or imports TensorFlow; the API
and the flows run the same checks (``keep_versions``, the model file, the
destination), so a notebook, a deployment and the command line refuse a bad
input with the same exception and the same words. Nothing here touches the
network: a remote URI is checked for a known scheme and an installed backend.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

from export_core.errors import ExportValidationError

DTYPES = {
    "bfloat16", "bool", "complex128", "complex64", "double", "float", "float16", "float32",
    "float64", "half", "int16", "int32", "int64", "int8", "string", "uint16", "uint32",
    "uint64", "uint8",
}  # fmt: skip
BACKEND_HINTS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs"}


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


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def check_scheme(uri: str, what: str) -> str:
    """The URI's scheme, when fsspec knows it and its backend is installed."""
    import fsspec

    scheme = scheme_of(uri)
    if scheme in ("file", "local"):
        return scheme
    try:
        fsspec.get_filesystem_class(scheme)
    except (ValueError, ImportError) as exc:
        hint = BACKEND_HINTS.get(scheme)
        fix = f"pip install {hint}" if hint else "install its fsspec backend or fix the URI"
        raise ExportValidationError(
            f"{what} {uri!r} has the scheme '{scheme}', for which no fsspec filesystem is "
            f"installed ({type(exc).__name__}). Use a local path, s3://, gs://, or {fix}."
        ) from exc
    return scheme


def local_path(uri: str) -> str:
    return uri.split("://", 1)[1] if uri.startswith(("file://", "local://")) else uri


def check_model_file(uri: str) -> None:
    """A ``.keras`` archive: a zip holding Keras's ``config.json``.

    Raises:
        ExportValidationError: Missing, a folder (a SavedModel?), an ``.h5``, not a
            zip, truncated, or a zip without a Keras config.
    """
    if check_scheme(str(uri), "Model source") != "file":
        if not str(uri).endswith(".keras"):
            raise _not_keras(uri)
        return  # remote: read when the model is loaded
    path = local_path(str(uri))
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ExportValidationError(
                f"Model source {uri} is a SavedModel folder, not a Keras model. Export from "
                "the .keras file it was made from (model.save('model.keras'))."
            )
        raise ExportValidationError(f"Model source {uri} is a folder, not a .keras file.")
    if not os.path.exists(path):
        raise ExportValidationError(
            f"Model source {uri} does not exist. Check the path (save the model with "
            "model.save('model.keras'))."
        )
    if path.endswith((".h5", ".hdf5")):
        raise ExportValidationError(
            f"Model source {uri} is a legacy HDF5 file. Load it with "
            "keras.models.load_model() and save it again with model.save('model.keras')."
        )
    if not path.endswith(".keras"):
        raise _not_keras(uri)
    check_archive(uri, path)


def _not_keras(uri: str) -> ExportValidationError:
    return ExportValidationError(
        f"Model source {uri!r} is not a .keras file; save the model with "
        "model.save('model.keras') and pass that file's path or URI."
    )


def check_archive(uri: str, path: str) -> None:
    """A local file is a complete ``.keras`` zip with Keras's ``config.json``.

    Raises:
        ExportValidationError: Truncated, not a zip, or no Keras config in it.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            broken = archive.testzip() if os.path.getsize(path) < 64 * 2**20 else None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExportValidationError(
            f"Model source {uri} is not a complete .keras archive ({exc}): the file is "
            "truncated or not a zip. Save the model again with model.save()."
        ) from exc
    if "config.json" not in names:
        raise ExportValidationError(
            f"Model source {uri} is a zip without Keras's config.json, so not a .keras "
            "model. Save the model with model.save('model.keras')."
        )
    if broken is not None:
        raise ExportValidationError(
            f"Model source {uri} is corrupt ({broken} fails its checksum). Save it again."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExportValidationError(
            f"Model source {uri} is corrupt: its config.json is not JSON ({exc}). Save the "
            "model again with model.save()."
        ) from exc
    if not isinstance(config, Mapping) or "class_name" not in config:
        raise ExportValidationError(
            f"Model source {uri} is corrupt: its config.json is not a Keras model config. "
            "Save the model again with model.save()."
        )


def check_destination(uri: Any, timestamped: bool = True) -> None:
    """A known scheme; on local disk a folder that can be written: not a file, not
    under a file, not on a read-only filesystem or without write permission.

    The Python API, the flows and the CLI all run this, so one mistake gets one
    message wherever it is made.

    Raises:
        ExportValidationError: What is wrong with the destination, and how to fix it.
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise ExportValidationError(
            f"The destination must be a non-empty path or URI, received {uri!r}; e.g. "
            "'/models/my_model', 's3://bucket/models/my_model'."
        )
    if check_scheme(uri, "Destination") != "file":
        return
    path = os.path.abspath(os.path.expanduser(local_path(uri)))
    if os.path.isfile(path):
        raise ExportValidationError(
            f"Destination {uri} is a file; pass a folder (versions are created under it)."
        )
    existing = path if timestamped or os.path.isdir(path) else os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ExportValidationError(
            f"Destination {uri} lies under {existing}, which is a file; pass a folder path."
        )
    if _read_only(existing):
        raise ExportValidationError(
            f"Destination {uri} cannot be written: {existing} is read-only (a read-only "
            "filesystem or no write permission for this user). Choose a writable folder."
        )


def _read_only(folder: str) -> bool:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    return not os.access(folder, os.W_OK | os.X_OK)


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


SERVE, MODES = "serve", ("serve", "train", "eval")
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


def check_sample_inputs_file(uri: str | None) -> None:
    """A local ``.npz`` that numpy reads without pickle (remote ones: read later)."""
    if uri is None or check_scheme(str(uri), "sample_inputs") != "file":
        return
    import numpy as np

    path = local_path(str(uri))
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                data[name]
    except FileNotFoundError as exc:
        raise ExportValidationError(f"sample_inputs {uri} does not exist.") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ExportValidationError(
            f"sample_inputs {uri} is not a readable .npz without pickle ({exc}). Save it "
            "with numpy.savez(path, input_name=array); store text as str or bytes arrays."
        ) from exc


def parse_json(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportValidationError(
            f"{name} is not valid JSON ({exc.msg} at character {exc.pos}): {text!r}."
        ) from exc
