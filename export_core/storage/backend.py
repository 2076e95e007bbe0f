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

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from export_core import constants as c
from export_core.errors import ExportValidationError, StorageError, VersionExistsError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
CLAIMS_DIR = ".claims"
# saved_model.pb(txt) comes after every other file of the SavedModel, the manifest
# after it: TF Serving takes the proto's presence as "complete".
LAST_FILES = (c.SAVED_MODEL_PB, c.SAVED_MODEL_PBTXT)
MANIFEST_FILE = c.MANIFEST
# ".staging-<unix seconds>-<uuid hex>", also at the end of ".<leaf>.staging-…".
_TIMED_STAGING = re.compile(re.escape(STAGING_PREFIX) + r"(\d{1,12})-[0-9a-f]{32}$")

BACKEND_HINTS = {
    "s3": "pip install s3fs",
    "s3a": "pip install s3fs",
    "gs": "pip install gcsfs",
    "gcs": "pip install gcsfs",
    "abfs": "pip install adlfs",
    "az": "pip install adlfs",
}


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
        if isinstance(uri, os.PathLike):
            uri = os.fspath(uri)
        if not isinstance(uri, str) or not uri.strip():
            raise ExportValidationError(
                f"saved_model_path must be a non-empty path or URI, received {uri!r}; "
                "e.g. '/models/my_model', 's3://bucket/models/my_model'."
            )
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
            raise storage_error(f"Cannot access '{self.uri}'", exc) from exc
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
        """Integer version folders under the base, oldest first."""
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if n.isdigit())


def new_staging_name(now: float | None = None) -> str:
    """A fresh staging folder name that records its creation time.

    ``.staging-<unix seconds>-<uuid hex>``: not an integer, so TensorFlow Serving
    ignores it, and its age is known from the name alone (see ``staging_created``).

    Args:
        now: The creation time to record (default: the current time).
    """
    seconds = int(time.time() if now is None else now)
    return f"{STAGING_PREFIX}{seconds}-{uuid.uuid4().hex}"


def staging_created(name: str) -> float | None:
    """The creation time a staging name records, or None for an untimed (older) name."""
    found = _TIMED_STAGING.search(name)
    return float(found.group(1)) if found else None


def claim_record(version: int, now: float | None = None, build_id: str | None = None) -> bytes:
    """The content of a claim marker: JSON with the version, its creation time, the build."""
    created = int(time.time() if now is None else now)
    record = {"version": version, "created": created, "token": uuid.uuid4().hex}
    if build_id:
        record["build_id"] = build_id
    return json.dumps(record, sort_keys=True).encode()


def claim_created(name: str, content: bytes) -> float | None:
    """When a claim marker was made: from its JSON, else from its name.

    Markers written before claims held JSON contain a bare uuid; their name is the
    claimed version, which ``claim_version`` takes from the clock, so it is the
    claim's time unless a caller chose the version. None when neither says.
    """
    try:
        created = json.loads(content).get("created")
    except (ValueError, AttributeError, UnicodeDecodeError):
        created = None
    if isinstance(created, int | float) and not isinstance(created, bool):
        return float(created)
    return float(name) if name.isdigit() else None


def create_if_absent(fs: Any, path: str, data: bytes) -> bool:
    """Writes ``path`` only if nothing is there; False when it already exists.

    fsspec's ``mode="create"``: If-None-Match on S3, ifGenerationMatch=0 on GCS.
    """
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def is_s3(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "s3" in protocols


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


def safe_message(exc: BaseException) -> str:
    """An error message with anything that looks like a credential masked."""
    text = str(exc)
    pattern = r"(?i)(secret|token|key|signature|credential)[^\s,;&]*[=:]\s*\S+"
    return re.sub(pattern, r"\1=***", text)


PROBE_TIMEOUT = 3.0  # seconds; s3fs config_kwargs.connect_timeout / gcsfs requests_timeout
DEFAULT_ENDPOINTS = {"s3": "https://s3.amazonaws.com", "gcs": "https://storage.googleapis.com"}


def probe_endpoint(fs: Any, uri: str) -> None:
    """One TCP connect to the store's endpoint, so that nothing listening fails in seconds.

    s3fs/botocore and gcsfs retry a refused connection with backoff for 20-35 s
    (and print a traceback per attempt); they keep doing so for real transfers,
    where a flaky network deserves retries. Validation only needs to know that
    something answers. The timeout follows ``config_kwargs={"connect_timeout": ...}``
    (s3fs) or ``requests_timeout`` (gcsfs) when given.

    Raises:
        StorageError: The endpoint's host does not resolve or refuses the connection.
    """
    import socket
    from urllib.parse import urlsplit

    kind = "s3" if is_s3(fs) else "gcs" if type(fs).__name__ == "GCSFileSystem" else None
    if kind is None:
        return
    endpoint = getattr(fs, "endpoint_url", None) if kind == "s3" else getattr(fs, "_endpoint", None)
    parts = urlsplit(endpoint or DEFAULT_ENDPOINTS[kind])
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = (getattr(fs, "config_kwargs", None) or {}).get("connect_timeout") or getattr(
        fs, "requests_timeout", None
    )
    try:
        socket.create_connection(
            (parts.hostname, port), timeout=float(timeout or PROBE_TIMEOUT)
        ).close()
    except OSError as exc:
        raise StorageError(
            f"Cannot access '{uri}': the endpoint cannot be reached: check endpoint_url, DNS "
            f"and the network. ({parts.scheme}://{parts.hostname}:{port}: {exc})"
        ) from exc
