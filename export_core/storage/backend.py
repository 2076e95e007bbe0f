"""One fsspec filesystem per destination, the names this package writes there, errors.

Everything goes through ``fsspec.core.url_to_fs(uri, **storage_options)``; nothing
here knows a backend by name except the install hints of ``BACKEND_HINTS``.

Staging folders and claim markers record when they were made, in their own name
(``.staging-<unix seconds>-<uuid hex>``) or content (a claim's JSON), so that
retention can tell an abandoned one from a live one without trusting a backend's
modification times (object stores report upload times, local disks whatever the
last writer did, and hosts' clocks differ from the store's).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from export_core import constants as c
from export_core.errors import ExportValidationError, StorageError, VersionExistsError, safe_message
from export_core.preflight.files import path_or_uri
from export_core.storage.endpoint import probe_endpoint, unknown_option
from export_core.storage.names import version_number

log = logging.getLogger(__name__)

# saved_model.pb(txt) comes after every other file of the SavedModel, the manifest
# after it: TF Serving takes the proto's presence as "complete".
LAST_FILES = (c.SAVED_MODEL_PB, c.SAVED_MODEL_PBTXT)
MANIFEST_FILE = c.MANIFEST
# Signs the manifest (and so every file) for the version's number: written once the
# number is claimed, before saved_model.pb (artifacts/signing.py).
SIGNATURE_FILE = c.SIGNATURE

BACKEND_HINTS = {
    "s3": "pip install s3fs",
    "s3a": "pip install s3fs",
    "gs": "pip install gcsfs",
    "gcs": "pip install gcsfs",
    "abfs": "pip install adlfs",
    "az": "pip install adlfs",
}


def is_local_uri(uri: Any) -> bool:
    """Whether ``uri`` names local disk (a path or ``file://``), without making a filesystem."""
    protocol, _ = fsspec.core.split_protocol(path_or_uri(uri))
    return protocol in (None, "file", "local")


@dataclass(frozen=True)
class Destination:
    """A base path on some filesystem, as given by the caller."""

    uri: str
    fs: Any
    path: str

    @classmethod
    def parse(cls, uri: Any, storage_options: Mapping[str, Any] | None = None) -> Destination:
        """Resolves ``uri`` to a filesystem without touching the network.

        Raises:
            ExportValidationError: The path is empty or its scheme has no installed
                fsspec backend.
        """
        uri = path_or_uri(uri)
        try:
            fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
        except (ImportError, ValueError) as exc:
            scheme = uri.split("://", 1)[0] if "://" in uri else "file"
            hint = BACKEND_HINTS.get(scheme, f"install the fsspec backend for '{scheme}://'")
            raise ExportValidationError(
                f"No usable fsspec filesystem for '{uri}' (scheme '{scheme}'): {exc}. "
                f"Fix: {hint}, or use a local path / file://, s3://, gs:// URI."
            ) from exc
        return cls(uri=uri, fs=fs, path=path.rstrip("/") or path)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    def child_uri(self, name: str | None) -> str:
        """The caller's URI for the base, or for a path relative to it."""
        if name is None:
            return self.uri
        if self.is_local:
            return self.join(name)
        return f"{self.uri.rstrip('/')}/{name}"

    def uri_of(self, path: str) -> str:
        """The caller's URI for a filesystem path under the base (for messages)."""
        base = self.path.rstrip("/")
        if path.rstrip("/") == base:
            return self.uri
        if path.startswith(base + "/"):
            return self.child_uri(path[len(base) + 1 :].rstrip("/"))
        return path

    def check_reachable(self) -> None:
        """Fails fast, before any expensive work, when the destination is unusable.

        One cheap request: wrong credentials, an unreachable endpoint or (on object
        stores, whose paths start with a bucket) a missing bucket each raise a
        ``StorageError`` saying which and how to fix it. Local paths need no check.
        """
        if self.is_local:
            return
        probe_endpoint(self.fs, self.uri)
        try:
            self.fs.exists(self.path)
            bucket = self.path.split("/", 1)[0]
            # Object stores in fsspec have no root marker: their first component is a bucket.
            missing = self.fs.root_marker == "" and bucket and not self.fs.exists(bucket)
        except Exception as exc:  # noqa: BLE001 - backends raise their own error types
            raise unknown_option(self.fs, exc) or storage_error(
                f"Cannot access '{self.uri}'", exc
            ) from exc
        if missing:
            raise StorageError(
                f"Bucket '{bucket}' of '{self.uri}' does not exist (or these credentials "
                "cannot see it). Create it, fix the name, or check the credentials."
            )

    def require_empty(self) -> None:
        """Raises ``VersionExistsError`` when the destination holds anything."""
        if self.is_local:
            entries = os.listdir(self.path) if os.path.isdir(self.path) else []
            if os.path.exists(self.path) and not os.path.isdir(self.path):
                entries = [self.path]
        else:
            entries = self.fs.find(self.path) if self.fs.exists(self.path) else []
        if entries:
            raise VersionExistsError(
                f"SavedModel folder '{self.uri}' already exists and is not empty "
                f"({len(entries)} entries); nothing was written. Choose a new folder, "
                "remove this one, or use timestamped=True to add a new version under it."
            )

    def versions(self) -> list[int]:
        """Version folders under the base (``version_number``), oldest first."""
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(v for v in map(version_number, names) if v is not None)


def create_if_absent(fs: Any, path: str, data: bytes) -> bool:
    """Writes ``path`` only if nothing is there; False when it already exists.

    fsspec's ``mode="create"``: If-None-Match on S3, ifGenerationMatch=0 on GCS.
    """
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def quiet_rm(fs: Any, paths: list[str], recursive: bool = False) -> None:
    """Best-effort removal for cleanup after a failure: errors are only logged."""
    for path in paths:
        try:
            fs.rm(path, recursive=recursive)
        except Exception as exc:  # noqa: BLE001 - cleanup is best effort
            log.debug("cleanup of %s failed: %s", path, safe_message(exc))


def storage_error(what: str, exc: BaseException) -> StorageError:
    """A ``StorageError`` that says what kind of failure it was and how to fix it."""
    if isinstance(exc, PermissionError):
        hint = (
            "access was denied: check the credentials (storage_options such as key/secret "
            "or token, or the AWS_*/GOOGLE_APPLICATION_CREDENTIALS environment)"
        )
    elif isinstance(exc, FileNotFoundError):
        hint = "it does not exist: check the bucket and path"
    elif "connect" in type(exc).__name__.lower() or "connect" in str(exc).lower():
        hint = "the endpoint cannot be reached: check endpoint_url, DNS and the network"
    else:
        hint = f"{type(exc).__name__}"
    return StorageError(f"{what}: {hint}. ({safe_message(exc)})")
