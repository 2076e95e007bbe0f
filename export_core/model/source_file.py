"""Turning JSON-friendly parameters (URIs, import paths, dicts) into Python objects.

Deployments pass only plain values; these helpers resolve them at the edge, with
errors that name the bad value and the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from export_core import storage
from export_core.errors import CustomObjectError, ExportValidationError, StorageError
from export_core.model.backends import portable_objects
from export_core.preflight import check_archive


def resolve_custom_objects(paths: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Imports ``"package.module:NAME"`` strings into ``{"NAME": object}``.

    A mapping is returned as is (in-process callers may pass objects directly).
    """
    if paths is None:
        return {}
    if isinstance(paths, Mapping):
        return dict(paths)
    resolved = {}
    for path in paths:
        module_name, _, attr = str(path).partition(":")
        if not module_name or not attr:
            raise CustomObjectError(
                f"custom_objects entry {path!r} is not an import path; use "
                "'package.module:NAME', e.g. 'my_project.layers:Relu6'."
            )
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise CustomObjectError(
                f"custom_objects entry {path!r} cannot be imported ({exc}). Check the module "
                "is installed where the flow runs and the name is spelled as in the code."
            ) from exc
        resolved[attr.rsplit(".", 1)[-1]] = obj
    return resolved


def signature_from_json(specs: Sequence[Mapping[str, Any]] | None) -> list[tf.TensorSpec] | None:
    """``[{"shape": [null, 3], "dtype": "float32", "name": "x"}]`` -> ``tf.TensorSpec`` list."""
    if specs is None:
        return None
    if isinstance(specs, Mapping) or not isinstance(specs, Sequence) or isinstance(specs, str):
        raise ExportValidationError(
            'input_signature must be a JSON list of {"shape", "dtype", "name"} objects, '
            f'e.g. [{{"shape": [null, 3], "dtype": "float32", "name": "x"}}]; got {specs!r}.'
        )
    result = []
    for i, spec in enumerate(specs):
        try:
            shape = [None if d is None else int(d) for d in spec["shape"]]
            dtype = tf.as_dtype(spec.get("dtype", "float32"))
            result.append(tf.TensorSpec(shape, dtype, name=spec.get("name")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportValidationError(
                f"input_signature[{i}] = {spec!r} is malformed ({exc}); each entry needs "
                '"shape" (list of ints or null) and optionally "dtype" and "name".'
            ) from exc
    return result


def load_keras_source(
    uri: str,
    custom_objects: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> keras.Model:
    """Loads a ``.keras`` file from any fsspec URI (downloaded to a temp file).

    Raises:
        ExportValidationError: The file is missing, not a ``.keras`` archive, or corrupt.
    """
    return load_keras_source_with_info(uri, custom_objects, storage_options)[0]


def load_keras_source_with_info(
    uri: str,
    custom_objects: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[keras.Model, dict]:
    """The model and its ``{"uri", "sha256", "fingerprint"}``, reading the file once.

    The fingerprint (``fingerprint``) is taken before the download: if the file
    changes meanwhile, the next scheduled tick sees a different fingerprint and
    hashes the file again rather than trusting it.

    Raises:
        ExportValidationError: The file is missing, not a ``.keras`` archive, or corrupt.
    """
    if not str(uri).endswith(".keras"):
        raise ExportValidationError(
            f"Model source {uri!r} is not a .keras file; save the model with "
            "model.save('model.keras') and pass that file's path or URI."
        )
    source = storage.Destination.parse(uri, storage_options)
    with tempfile.TemporaryDirectory(prefix="keras-export-src-") as tmp:
        local = source.path if source.is_local else os.path.join(tmp, "model.keras")
        try:
            stored = fingerprint(source.fs.info(source.path))
            if not source.is_local:
                source.fs.get(source.path, local)
        except FileNotFoundError as exc:
            raise ExportValidationError(f"Model source {uri} does not exist.") from exc
        except OSError as exc:
            raise StorageError(f"Cannot read model source {uri}: {exc}") from exc
        if not os.path.exists(local):
            raise ExportValidationError(f"Model source {uri} does not exist.")
        check_archive(uri, local)  # a truncated or foreign file: say so, as the CLI does
        info = {"uri": uri, "sha256": _sha256_of(open, local), "fingerprint": stored}
        # A model trained under JAX or torch: its backend's own classes load as the
        # portable ones; the user's own custom objects win over these.
        objects = {**portable_objects(local, uri), **dict(custom_objects or {})}
        try:
            model = keras.saving.load_model(local, custom_objects=objects)
        except Exception as exc:
            raise ExportValidationError(
                f"Model source {uri} could not be loaded as a Keras model ({exc}). Is it a "
                "complete .keras file written by model.save()?"
            ) from exc
    return model, info


def load_sample_inputs(uri: str | None, storage_options: Mapping[str, Any] | None = None):
    """Golden inputs from an ``.npz`` file (one array per serving input name)."""
    if uri is None:
        return None
    source = storage.Destination.parse(uri, storage_options)
    try:
        with source.fs.open(source.path, "rb") as handle, np.load(handle) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise ExportValidationError(f"sample_inputs {uri} is not a readable .npz: {exc}") from exc


def source_info(uri: str | None, storage_options: Mapping[str, Any] | None = None) -> dict:
    """``{"uri", "sha256", "fingerprint"}`` of a model file, streamed (for the manifest)."""
    if uri is None:
        return {"uri": None, "sha256": None}
    source = storage.Destination.parse(uri, storage_options)
    stored = fingerprint(source.fs.info(source.path))
    return {"uri": uri, "sha256": _sha256_of(source.fs.open, source.path), "fingerprint": stored}


def _sha256_of(opener: Any, path: str) -> str:
    digest = hashlib.sha256()
    with opener(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# What each backend's listing says about an object's content, cheapest first to change
# when the bytes change. S3: the ETag (an MD5 unless SSE-KMS) and size. GCS: its
# checksums, or the generation when a composite object has no MD5. Local disk: size,
# modification time and inode (a save that replaces the file gets a new one).
_FINGERPRINT_KEYS = (
    ("ETag", "size"),
    ("md5Hash", "crc32c", "size"),
    ("generation", "crc32c", "size"),
    ("mtime", "ino", "size"),
)


def fingerprint(info: Mapping[str, Any]) -> dict | None:
    """The store's own identity of an object's content, from its metadata (0 bytes read).

    None when the backend reports nothing that changes with the content; callers then
    hash the bytes.
    """
    for keys in _FINGERPRINT_KEYS:
        if all(info.get(k) not in (None, "") for k in keys):
            return {k: _plain(info[k]) for k in keys}
    return None


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) else str(value)
