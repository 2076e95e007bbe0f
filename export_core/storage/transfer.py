"""Moving bytes: uploads with predictable checksums, checking what landed, downloads.

Progress is reported per file to the caller's callback and to any listener
registered with ``progress_listener`` (e.g. the command line's progress bar).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from export_core.errors import StorageError, VerificationError
from export_core.storage.backend import Destination, storage_error
from export_core.storage.endpoint import is_s3

S3_PART_SIZE = 50 * 2**20  # s3fs's default part size, passed explicitly
HASH_CHUNK = 1 << 20

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


def report_progress(progress: ProgressFn | None, done: int, total: int) -> None:
    """Tells ``progress`` and every registered listener how far a transfer got."""
    for listener in ([progress] if progress else []) + list(_LISTENERS):
        listener(done, total)


def put_file(fs: Any, local: str, remote: str) -> None:
    """Uploads one file; on S3 with a fixed part size (see ``s3_etag``)."""
    if is_s3(fs):
        # A fixed part size makes the object's ETag predictable (see confirm_landed).
        fs.put_file(local, remote, chunksize=S3_PART_SIZE)
    else:
        fs.put_file(local, remote)


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
    """The ETag S3 gives ``path`` uploaded by ``put_file`` (unencrypted or SSE-S3)."""
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
                report_progress(progress, done, total)
        except Exception as exc:  # noqa: BLE001 - backends raise their own error types
            raise storage_error(f"Reading '{dest.child_uri(None)}' failed", exc) from exc
        yield tmp


def sha256_file(path: str) -> str:
    """The sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
