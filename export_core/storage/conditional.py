"""Conditional writes: read an object with a token, write it only if the token holds.

The compare-and-swap under the label document (``export_core.registry.labels``), one small
place per backend:

* S3: the ETag from the read; ``put_object`` with ``IfMatch`` (``IfNoneMatch="*"``
  to create). A stale ETag gets 412 PreconditionFailed.
* GCS: the generation from the read; a multipart upload with
  ``ifGenerationMatch`` (0 to create), which fake-gcs-server enforces too.
* local disk: an ``O_CREAT | O_EXCL`` lock file, the content's sha256 compared under
  it, then an fsync'd temp file ``os.replace``d (atomic); a stale lock is broken by
  the age recorded inside it.
* memory:// (tests): a process lock around the same compare.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from fsspec.asyn import sync
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from export_core.errors import ExportValidationError, StorageError
from export_core.storage.backend import Destination, storage_error
from export_core.storage.endpoint import is_s3

LOCK_STALE_AFTER = 30.0  # seconds; a writer holds the local lock for milliseconds
LOCK_WAIT = 10.0
_MEMORY_LOCK = threading.Lock()


def read_with_token(dest: Destination, path: str) -> tuple[bytes | None, Any]:
    """The document's bytes and a token of that exact content; (None, None) when missing."""
    reader = {"s3": _s3_read, "gcs": _gcs_read}.get(_kind(dest.fs), _digest_read)
    try:
        return reader(dest.fs, path)
    except FileNotFoundError:
        return None, None
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Reading '{dest.uri_of(path)}' failed", exc) from exc


def write_if_unchanged(fs: Any, path: str, data: bytes, token: Any) -> bool:
    """Writes ``data`` if the token ``read_with_token`` gave is still current; else False."""
    try:
        return writer_for(fs)(fs, path, data, token)
    finally:
        fs.invalidate_cache(path)


def _kind(fs: Any) -> str:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if isinstance(fs, LocalFileSystem | MemoryFileSystem):
        return "locked"
    return "s3" if is_s3(fs) else "gcs" if "gs" in protocols else str(protocols[0])


def writer_for(fs: Any) -> Callable[[Any, str, bytes, Any], bool]:
    writer = {"s3": _s3_write, "gcs": _gcs_write, "locked": _locked_write}.get(_kind(fs))
    if writer is None:
        raise ExportValidationError(
            "Labels need conditional writes, implemented here for local disk, memory://, "
            f"s3:// and gs://; received a '{_kind(fs)}://' base."
        )
    return writer


def _digest_read(fs: Any, path: str) -> tuple[bytes, str]:
    data = fs.cat_file(path)
    return data, hashlib.sha256(data).hexdigest()


def _locked_write(fs: Any, path: str, data: bytes, token: str | None) -> bool:
    local = isinstance(fs, LocalFileSystem)
    with _file_lock(f"{path}.lock") if local else _MEMORY_LOCK:
        try:
            if _digest_read(fs, path)[1] != token:
                return False
        except FileNotFoundError:
            if token is not None:
                return False
        if not local:
            fs.pipe_file(path, data)
            return True
        temp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)  # atomic: readers see the old or the new document
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp)
    return True


@contextlib.contextmanager
def _file_lock(lock: str) -> Iterator[None]:
    """An ``O_CREAT | O_EXCL`` lock file; one older than ``LOCK_STALE_AFTER`` is broken."""
    record = json.dumps({"pid": os.getpid(), "created": time.time(), "id": uuid.uuid4().hex})
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise StorageError(
                    f"'{lock}' stayed locked for {LOCK_WAIT:.0f} s: a writer is stuck. It is "
                    f"broken once {LOCK_STALE_AFTER:.0f} s old, or remove it if none runs."
                ) from None
            _break_stale(lock)
            time.sleep(random.uniform(0.001, 0.01))
    with os.fdopen(fd, "w") as handle:
        handle.write(record)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if _read_text(lock) == record:  # never remove a lock another writer holds
                os.remove(lock)


def _break_stale(lock: str) -> None:
    try:
        seen, created = _read_text(lock), os.stat(lock).st_mtime
    except FileNotFoundError:
        return
    with contextlib.suppress(ValueError, KeyError, TypeError):
        created = float(json.loads(seen)["created"])  # empty while being written: mtime
    if time.time() - created < LOCK_STALE_AFTER:
        return
    grave = f"{lock}.stale-{uuid.uuid4().hex}"
    with contextlib.suppress(FileNotFoundError):
        os.rename(lock, grave)  # atomic: of several writers breaking it, one wins
        if _read_text(grave) != seen:  # a live lock replaced the stale one: give it back
            with contextlib.suppress(FileExistsError):
                os.link(grave, lock)
        os.remove(grave)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


async def _s3_get(fs: Any, path: str) -> tuple[bytes, str]:
    bucket, key, _ = fs.split_path(path)
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    try:  # one answer holds both the content and its ETag
        return await response["Body"].read(), response["ETag"]
    finally:
        response["Body"].close()


def _s3_read(fs: Any, path: str) -> tuple[bytes, str]:
    return sync(fs.loop, _s3_get, fs, path)


def _s3_write(fs: Any, path: str, data: bytes, etag: str | None) -> bool:
    bucket, key, _ = fs.split_path(path)
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
    except (FileExistsError, FileNotFoundError):  # If-None-Match failed; If-Match: doc removed
        return False
    except OSError as exc:  # s3fs maps an If-Match 412 to a bare OSError(EINVAL)
        code = (getattr(exc.__cause__, "response", None) or {}).get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def _gcs_read(fs: Any, path: str) -> tuple[bytes, str]:
    headers, data = fs.call("GET", fs.url(path))
    return data, headers["X-Goog-Generation"]  # one answer: content and its generation


def _gcs_write(fs: Any, path: str, data: bytes, generation: str | None) -> bool:
    # A multipart upload, as gcsfs's pipe_file sends (which takes no generation):
    # fake-gcs-server checks ifGenerationMatch on this upload type only, GCS on all.
    bucket, key, _ = fs.split_path(path)
    boundary = uuid.uuid4().hex
    part = f"--{boundary}\nContent-Type: application/json; charset=UTF-8\n\n".encode()
    meta = json.dumps({"name": key, "contentType": "application/json"}).encode()
    try:
        fs.call(
            "POST",
            f"{fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
            uploadType="multipart",
            ifGenerationMatch=generation or "0",
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            data=part + meta + b"\n" + part + data + f"\n--{boundary}--".encode(),
            json_out=True,
        )
    except FileExistsError:  # gcsfs's name for 412 Precondition Failed
        return False
    return True
