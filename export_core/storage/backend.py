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
import socket
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
# ".staging-<unix seconds>-<uuid hex>", also at the end of ".<leaf>.staging-…"; a
# local staging folder also names its host and process: ".staging-<s>-<host>-<pid>-<hex>".
_TIMED_STAGING = re.compile(
    re.escape(STAGING_PREFIX)
    + r"(?P<created>\d{1,12})-(?:(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-)?[0-9a-f]{32}$"
)
# TensorFlow Serving loads a folder as a version when its name parses as an int64.
INT64_MAX = 2**63 - 1
_CANONICAL = re.compile(r"0|[1-9][0-9]{0,18}")

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


def version_number(name: str) -> int | None:
    """The version a folder name stands for, or None when it is not one.

    Only canonical decimal int64 names count (``"17"``, not ``"0017"`` nor a number
    past 2**63 - 1): TensorFlow Serving loads only int64 versions, and a padded name
    would be listed as a version whose path (``<base>/17``) does not exist. Numbering,
    retention, listings and serving configs all go by this one rule.
    """
    if not _CANONICAL.fullmatch(name):
        return None
    number = int(name)
    return number if number <= INT64_MAX else None


def new_staging_name(now: float | None = None, owner: bool = False) -> str:
    """A fresh staging folder name that records its creation time.

    ``.staging-<unix seconds>-<uuid hex>``: not an integer, so TensorFlow Serving
    ignores it, and its age is known from the name alone (see ``staging_created``).
    With ``owner`` (a folder on this host's disk) the name also records this host
    and process, ``.staging-<s>-<host>-<pid>-<hex>``, so that once the process is
    gone (killed) the folder can be removed at once (``staging_owner_gone``).

    Args:
        now: The creation time to record (default: the current time).
        owner: Record this host and process id too.
    """
    seconds = int(time.time() if now is None else now)
    who = f"{host_name()}-{os.getpid()}-" if owner else ""
    return f"{STAGING_PREFIX}{seconds}-{who}{uuid.uuid4().hex}"


def is_staging_name(name: str) -> bool:
    """``.staging-…`` under a base, or ``.<leaf>.staging-…`` beside a target written
    with ``timestamped=False``."""
    return name.startswith(STAGING_PREFIX) or (
        name.startswith(".") and _TIMED_STAGING.search(name) is not None
    )


def staging_created(name: str) -> float | None:
    """The creation time a staging name records, or None for an untimed (older) name."""
    found = _TIMED_STAGING.search(name)
    return float(found.group("created")) if found else None


def staging_owner_gone(name: str) -> bool:
    """Whether a staging name records a process of this host that no longer runs."""
    found = _TIMED_STAGING.search(name)
    if found is None or found.group("pid") is None or found.group("host") != host_name():
        return False
    return not process_alive(int(found.group("pid")))


def host_name() -> str:
    """This host's name, as a file name can hold it (no '-', which separates fields)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (another user's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    version = version_number(name)
    return float(version) if version is not None else None


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


def unknown_option(fs: Any, exc: BaseException) -> ExportValidationError | None:
    """A backend's complaint about a keyword it does not take, as the caller's mistake."""
    found = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
    if found is None:
        return None
    return ExportValidationError(
        f"storage option '{found.group(1)}' is not one {type(fs).__name__} takes "
        f"({exc}). Fix or remove it in storage_options (CLI --storage-options); for S3 "
        "the client's own options go in client_kwargs or config_kwargs."
    )


def client_endpoint(fs: Any) -> str | None:
    """The URL the store's own client sends its requests to; None when it cannot be known.

    s3fs/botocore take the endpoint from a top-level ``endpoint_url``,
    ``client_kwargs={"endpoint_url": ...}``, ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``, an AWS config profile's ``endpoint_url``, and else AWS's
    own endpoint for the region: the client botocore builds from all of them
    (building it opens no connection) says which it chose. gcsfs takes
    ``endpoint_url``, else ``STORAGE_EMULATOR_HOST``, else Google's endpoint.
    """
    try:
        if is_s3(fs):
            fs.connect()  # the aiobotocore client, from every setting; no request is sent
            return str(fs.s3.meta.endpoint_url)
        if type(fs).__name__ == "GCSFileSystem":
            return str(fs._location)  # noqa: SLF001 - gcsfs's own resolution of the endpoint
    except Exception as exc:  # noqa: BLE001 - unknown: the caller skips what needs it
        problem = unknown_option(fs, exc)
        if problem is not None:
            raise problem from exc
        log.debug("the endpoint of %s cannot be resolved: %s", type(fs).__name__, safe_message(exc))
    return None


def probe_endpoint(fs: Any, uri: str) -> None:
    """One TCP connect to the store's endpoint, so that nothing listening fails in seconds.

    s3fs/botocore and gcsfs retry a refused connection with backoff for 20-35 s
    (and print a traceback per attempt); they keep doing so for real transfers,
    where a flaky network deserves retries. Validation only needs to know that
    something answers. The endpoint is the one the store's client will use
    (``client_endpoint``), wherever it was configured; when it cannot be known
    nothing is probed: no host the user did not configure is ever contacted. The
    timeout follows ``config_kwargs={"connect_timeout": ...}`` (s3fs) or
    ``requests_timeout`` (gcsfs) when given.

    Raises:
        StorageError: The endpoint's host does not resolve or refuses the connection.
    """
    import socket
    from urllib.parse import urlsplit

    endpoint = client_endpoint(fs)
    if not endpoint:
        return
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parts.hostname:
        return
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
            f"Cannot access '{uri}': the endpoint {parts.scheme}://{parts.hostname}:{port} "
            f"cannot be reached ({exc.strerror or exc}): check the endpoint (endpoint_url, "
            "client_kwargs, AWS_ENDPOINT_URL, the AWS profile, STORAGE_EMULATOR_HOST), DNS "
            "and the network."
        ) from None
