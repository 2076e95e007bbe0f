"""Destinations: one fsspec filesystem per export, version claims, and publishing.

Everything goes through ``fsspec.core.url_to_fs(uri, **storage_options)``. The only
backend-specific decision is how a finished build becomes visible:

* local disk: the SavedModel is built in a hidden staging folder next to the
  version folder and renamed into place — ``rename(2)`` is atomic, so a reader
  sees either no version folder or a complete one;
* any other backend (object stores have no atomic rename): the build is uploaded
  to a staging prefix whose name TensorFlow Serving ignores (it only loads
  integer-named folders), then copied into the version folder with
  ``saved_model.pb`` after every other file, because serving systems take its
  presence as "this version is complete" (TensorFlow's own ``save`` writes it
  last for the same reason).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from export_core import constants as c
from export_core.errors import (
    ExportValidationError,
    StorageError,
    VerificationError,
    VersionExistsError,
)

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
CLAIMS_DIR = ".claims"
# saved_model.pb(txt) comes after every other file of the SavedModel, the manifest
# after it: TF Serving takes the proto's presence as "complete".
LAST_FILES = (c.SAVED_MODEL_PB, c.SAVED_MODEL_PBTXT)
S3_PART_SIZE = 50 * 2**20  # s3fs's default part size, passed explicitly
HASH_CHUNK = 1 << 20
MANIFEST_FILE = c.MANIFEST

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

    def check_reachable(self) -> None:
        """Fails fast, before any expensive work, when the destination is unusable.

        One cheap request: wrong credentials, an unreachable endpoint or (on object
        stores, whose paths start with a bucket) a missing bucket each raise a
        ``StorageError`` saying which and how to fix it. Local paths need no check.
        """
        if self.is_local:
            return
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


def new_build_dir(dest: Destination, timestamped: bool) -> str:
    """A private local folder to build the SavedModel in.

    For local destinations it sits beside the final folder (same filesystem, so the
    final rename is atomic) under a name TensorFlow Serving ignores.
    """
    if not dest.is_local:
        return tempfile.mkdtemp(prefix="keras-export-")
    parent = dest.path if timestamped else os.path.dirname(os.path.abspath(dest.path))
    name = STAGING_PREFIX + uuid.uuid4().hex
    if not timestamped:
        name = f".{os.path.basename(dest.path)}{name}"
    try:
        os.makedirs(parent, exist_ok=True)
        build_dir = os.path.join(parent, name)
        os.mkdir(build_dir)
    except OSError as exc:
        raise StorageError(f"Cannot create a staging folder under '{parent}': {exc}") from exc
    return build_dir


def remove_build_dir(build_dir: str) -> None:
    shutil.rmtree(build_dir, ignore_errors=True)


def ordered_files(build_dir: str) -> list[str]:
    """Relative paths of the build: ``saved_model.pb`` after the rest, the manifest last."""
    files = []
    for root, _dirs, names in os.walk(build_dir):
        for name in names:
            files.append(os.path.relpath(os.path.join(root, name), build_dir).replace(os.sep, "/"))
    return sorted(files, key=lambda f: (f == MANIFEST_FILE, f in LAST_FILES, f))


@dataclass(frozen=True)
class Published:
    """Where a version landed."""

    path: str
    version: int | None


ProgressFn = Callable[[int, int], None]
_LISTENERS: list[ProgressFn] = []


@contextlib.contextmanager
def progress_listener(listener: ProgressFn) -> Iterator[None]:
    """Also reports upload progress to ``listener`` (e.g. a terminal progress bar)."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def _report(progress: ProgressFn | None, done: int, total: int) -> None:
    for listener in ([progress] if progress else []) + list(_LISTENERS):
        listener(done, total)


def stage(
    build_dir: str, dest: Destination, timestamped: bool, progress: ProgressFn | None = None
) -> str | None:
    """Uploads the build to a staging prefix at a remote destination.

    Local builds already sit in their staging folder on the destination's disk;
    for them this returns None. Files stream from disk (``fs.put``), so no
    checkpoint shard is ever held in memory whole.

    Raises:
        StorageError: The upload failed; the partial staging prefix is removed.
    """
    if dest.is_local:
        return None
    files = ordered_files(build_dir)
    staging = _remote_staging(dest, timestamped)
    total = sum(os.path.getsize(os.path.join(build_dir, f)) for f in files)
    done = 0
    try:
        for f in files:  # one by one, so progress is reported per file
            _put_file(dest.fs, os.path.join(build_dir, f), f"{staging}/{f}")
            done += os.path.getsize(os.path.join(build_dir, f))
            _report(progress, done, total)
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        _quiet_rm(dest.fs, [staging], recursive=True)
        raise storage_error(f"Uploading to '{dest.uri}' failed", exc) from exc
    return staging


def _put_file(fs: Any, local: str, remote: str) -> None:
    if _is_s3(fs):
        # A fixed part size makes the object's ETag predictable (see confirm_landed).
        fs.put_file(local, remote, chunksize=S3_PART_SIZE)
    else:
        fs.put_file(local, remote)


def _is_s3(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "s3" in protocols


def confirm_landed(
    dest: Destination, build_dir: str, staging: str, expected: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """Checks that the staged objects are byte for byte the build's files.

    ``expected`` maps each relative path to its manifest entry (``size``). The check
    uses the checksum the store reports when it can be recomputed from the local
    file: S3's ETag (the MD5 of a plain upload, or the MD5 of the part MD5s of a
    multipart upload with our part size), GCS's ``md5Hash``. Anything else (another
    store, an SSE-KMS object whose ETag is no MD5) is downloaded and compared by
    sha256. Returns how each file was checked: ``"etag"``, ``"md5"`` or ``"sha256"``.

    Raises:
        VerificationError: A file is missing, extra, or differs.
        StorageError: The staging prefix could not be listed or read.
    """
    try:
        details = dest.fs.find(staging, detail=True)
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Listing '{dest.child_uri(None)}' staging failed", exc) from exc
    landed = {path[len(staging) :].lstrip("/"): info for path, info in details.items()}
    missing, unexpected = sorted(set(expected) - set(landed)), sorted(set(landed) - set(expected))
    if missing or unexpected:
        raise VerificationError(
            f"The upload to {dest.uri} is incomplete: missing {missing}, unexpected "
            f"{unexpected}. Nothing was published."
        )
    methods = {}
    for rel, entry in sorted(expected.items()):
        info, local = landed[rel], os.path.join(build_dir, rel)
        if int(info.get("size") or 0) != int(entry["size"]):
            raise VerificationError(
                f"{rel} landed at {dest.uri} with {info.get('size')} bytes, not "
                f"{entry['size']}. Nothing was published."
            )
        methods[rel] = _checksum_match(info, local) or _download_match(dest, rel, local, staging)
    return methods


def _checksum_match(info: Mapping[str, Any], local: str) -> str | None:
    etag = str(info.get("ETag") or "").strip('"')
    if etag and etag == s3_etag(local, os.path.getsize(local)):
        return "etag"
    md5 = info.get("md5Hash")
    if md5 and md5 == base64.b64encode(_md5(local).digest()).decode():
        return "md5"
    return None


def _download_match(dest: Destination, rel: str, local: str, staging: str) -> str:
    from export_core.manifest import sha256_file

    with tempfile.TemporaryDirectory(prefix="keras-export-check-") as tmp:
        copy = os.path.join(tmp, "landed")
        try:
            dest.fs.get_file(f"{staging}/{rel}", copy)
        except Exception as exc:  # noqa: BLE001 - backends raise their own error types
            raise storage_error(f"Reading back '{rel}' from '{dest.uri}' failed", exc) from exc
        if sha256_file(copy) != sha256_file(local):
            raise VerificationError(
                f"{rel} landed at {dest.uri} differs from the build (sha256). Nothing was "
                "published."
            )
    return "sha256"


def s3_etag(path: str, size: int) -> str:
    """The ETag S3 gives ``path`` uploaded by ``_put_file`` (unencrypted or SSE-S3)."""
    if size < 2 * S3_PART_SIZE:  # s3fs uploads this in one PUT
        return _md5(path).hexdigest()
    parts = []
    with open(path, "rb") as handle:
        while chunk := handle.read(S3_PART_SIZE):
            parts.append(hashlib.md5(chunk).digest())  # noqa: S324 - see _md5
    return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"  # noqa: S324


def _md5(path: str):
    digest = hashlib.md5()  # noqa: S324 - what the stores report; integrity, not security
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest


@contextlib.contextmanager
def local_copy(
    uri: Any, storage_options: Mapping[str, Any] | None = None, progress: ProgressFn | None = None
) -> Iterator[str]:
    """Yields a local folder with the contents of ``uri`` (downloaded when remote)."""
    dest = Destination.parse(uri, storage_options)
    if dest.is_local:
        if not os.path.isdir(dest.path):
            raise StorageError(f"'{dest.uri}' is not a folder.")
        yield dest.path
        return
    with _download(dest, dest.path, progress) as local:
        yield local


@contextlib.contextmanager
def _download(dest: Destination, prefix: str, progress: ProgressFn | None = None):
    with tempfile.TemporaryDirectory(prefix="keras-export-read-") as tmp:
        try:
            details = dest.fs.find(prefix, detail=True)
            if not details:
                raise FileNotFoundError(f"nothing under {prefix}")
            total = sum(int(info.get("size") or 0) for info in details.values())
            done = 0
            for remote, info in sorted(details.items()):
                local = os.path.join(tmp, remote[len(prefix) :].lstrip("/"))
                os.makedirs(os.path.dirname(local), exist_ok=True)
                dest.fs.get_file(remote, local)
                done += int(info.get("size") or 0)
                _report(progress, done, total)
        except Exception as exc:  # noqa: BLE001 - backends raise their own error types
            raise storage_error(f"Reading '{dest.child_uri(None)}' failed", exc) from exc
        yield tmp


def publish(
    build_dir: str, dest: Destination, timestamped: bool, staging: str | None = None
) -> Published:
    """Makes a finished, verified build visible at the destination.

    The manifest (if the build has one) is the last file to appear.

    Raises:
        VersionExistsError: ``timestamped=False`` and the folder filled up meanwhile.
        StorageError: The destination could not be written; nothing is left visible.
    """
    if dest.is_local:
        return _publish_local(build_dir, dest, timestamped)
    if staging is None:
        staging = stage(build_dir, dest, timestamped)
    return _publish_remote(build_dir, dest, timestamped, staging)


def cleanup(build_dir: str, dest: Destination, staging: str | None) -> None:
    """Removes the local build and the remote staging prefix, whatever happened."""
    remove_build_dir(build_dir)
    if staging is not None:
        cleanup_staging(dest, staging)


def cleanup_staging(dest: Destination, staging: str) -> None:
    _quiet_rm(dest.fs, [staging], recursive=True)


def _publish_local(build_dir: str, dest: Destination, timestamped: bool) -> Published:
    if not timestamped:
        try:
            os.rename(build_dir, dest.path)  # replaces a missing or empty folder only
        except OSError as exc:
            if os.path.isdir(dest.path) and os.listdir(dest.path):
                dest.require_empty()
            raise StorageError(f"Cannot move the export into '{dest.path}': {exc}") from exc
        return Published(dest.path, None)
    version = claim_version(dest)
    target = dest.join(str(version))
    try:
        os.rename(build_dir, target)  # onto the empty folder we claimed: atomic
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise StorageError(f"Cannot move the export into '{target}': {exc}") from exc
    return Published(target, version)


def claim_version(dest: Destination, start: int | None = None) -> int:
    """Claims the first free integer version >= ``start`` (default: now, in seconds).

    Claims are create-if-absent operations, so concurrent exports never share a
    version; a taken integer moves on to the next one at once (no sleeping).
    """
    version = int(time.time()) if start is None else start
    for _ in range(10_000):
        if _try_claim(dest, version):
            return version
        version += 1
    raise StorageError(f"Could not claim a free version folder under '{dest.uri}'.")


def _try_claim(dest: Destination, version: int) -> bool:
    target = dest.join(str(version))
    if dest.is_local:
        try:
            os.mkdir(target)
        except FileExistsError:
            return False
        return True
    if dest.fs.exists(target):
        return False
    marker = dest.join(CLAIMS_DIR, str(version))
    try:
        # fsspec's create-if-absent: If-None-Match on S3, ifGenerationMatch=0 on GCS.
        dest.fs.pipe_file(marker, uuid.uuid4().hex.encode(), mode="create")
    except FileExistsError:
        return False
    return not dest.fs.exists(target)


def _publish_remote(
    build_dir: str, dest: Destination, timestamped: bool, staging: str
) -> Published:
    files = ordered_files(build_dir)
    version = None
    written: list[str] = []
    try:
        if timestamped:
            version = claim_version(dest)
            target = dest.join(str(version))
        else:
            dest.require_empty()
            target = dest.path
        for f in files:  # everything, then saved_model.pb, then the manifest
            if f == MANIFEST_FILE:  # written after verification: not in staging
                dest.fs.put_file(os.path.join(build_dir, f), f"{target}/{f}")
            else:
                dest.fs.copy(f"{staging}/{f}", f"{target}/{f}")
            written.append(f"{target}/{f}")
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        if isinstance(exc, VersionExistsError):
            raise
        _quiet_rm(dest.fs, list(reversed(written)))
        if version is not None:  # our claimed folder: leave no (pseudo-)directory behind
            _quiet_rm(dest.fs, [dest.join(str(version))], recursive=True)
            with contextlib.suppress(OSError, ValueError):
                if dest.fs.isdir(dest.join(str(version))):
                    dest.fs.rmdir(dest.join(str(version)))
        raise storage_error(f"Publishing to '{dest.uri}' failed", exc) from exc
    finally:
        if version is not None:
            _quiet_rm(dest.fs, [dest.join(CLAIMS_DIR, str(version))])
    return Published(dest.child_uri(None if version is None else str(version)), version)


def prune_versions(dest: Destination, keep: int, protect: int | None = None) -> list[int]:
    """Removes the oldest complete versions beyond the newest ``keep``.

    Only integer folders holding ``saved_model.pb`` count; anything else (staging,
    half-written or foreign folders) is never touched, nor is ``protect``.
    """
    if keep < 1:
        raise ExportValidationError(f"keep_versions must be >= 1, got {keep}.")
    complete = [v for v in dest.versions() if _is_complete(dest, v)]
    doomed = [v for v in complete[: max(0, len(complete) - keep)] if v != protect]
    for version in doomed:
        if dest.is_local:
            shutil.rmtree(dest.join(str(version)))
        else:
            dest.fs.rm(dest.join(str(version)), recursive=True)
    return doomed


def sweep_staging(dest: Destination) -> list[str]:
    """Removes staging folders/prefixes left by exports that were killed or cut off.

    Only names this package creates (``.staging-*``, ``.claims``) are touched. Run it
    when no export to this base is in progress.
    """
    try:
        entries = dest.fs.ls(dest.path, detail=False)
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(STAGING_PREFIX) or name == CLAIMS_DIR:
            if dest.is_local:
                shutil.rmtree(entry, ignore_errors=True)
            else:
                dest.fs.rm(entry, recursive=True)
            removed.append(name)
    return removed


def _is_complete(dest: Destination, version: int) -> bool:
    return any(dest.fs.exists(dest.join(str(version), name)) for name in LAST_FILES)


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


def _remote_staging(dest: Destination, timestamped: bool) -> str:
    """A prefix TensorFlow Serving ignores; beside the target when it is the base itself."""
    name = STAGING_PREFIX + uuid.uuid4().hex
    if timestamped:
        return dest.join(name)
    parent, _, leaf = dest.path.rstrip("/").rpartition("/")
    return f"{parent}/.{leaf}{name}" if parent else f".{leaf}{name}"


def _quiet_rm(fs: Any, paths: list[str], recursive: bool = False) -> None:
    for path in paths:
        try:
            fs.rm(path, recursive=recursive)
        except Exception as exc:  # noqa: BLE001 - cleanup is best effort
            log.debug("cleanup of %s failed: %s", path, safe_message(exc))
