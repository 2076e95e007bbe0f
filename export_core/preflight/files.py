"""The files an export is given or writes, checked before any work: the model file (a
complete ``.keras`` archive), the destination (a known scheme; locally a writable folder),
sample inputs (an ``.npz`` readable without pickle).

Part of ``export_core.preflight``: checks that need neither TensorFlow nor Prefect.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

from export_core.errors import ExportValidationError

BACKEND_HINTS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs"}


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


def path_or_uri(uri: Any) -> str:
    """A destination as a string: a path, a ``PathLike`` or a URI, never empty.

    Raises:
        ExportValidationError: Anything else.
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise ExportValidationError(
            f"The destination must be a non-empty path or URI, received {uri!r}; e.g. "
            "'/models/my_model', 's3://bucket/models/my_model'."
        )
    return uri


def check_destination(uri: Any, timestamped: bool = True) -> None:
    """A known scheme; on local disk a folder that can be written: not a file, not
    under a file, not on a read-only filesystem or without write permission.

    The Python API, the flows and the CLI all run this, so one mistake gets one
    message wherever it is made.

    Raises:
        ExportValidationError: What is wrong with the destination, and how to fix it.
    """
    uri = path_or_uri(uri)
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
