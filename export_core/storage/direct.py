"""S3: uploading straight into the claimed version, every byte once, visible only at the end.

The staging route (``publish``) uploads a build and then copies it into the
version folder, so every byte crosses the wire and the store twice. On S3 a
build goes instead into its final keys as *multipart uploads that are not yet
completed*: S3 shows no object, no prefix, nothing to list for an upload in
progress, so neither TensorFlow Serving nor a ``versions`` listing sees the
version. The parts go up in parallel while the build is verified; only a
verified build's uploads are completed, ``saved_model.pb`` after every other
file, the manifest (a plain ``PUT``) last: the same order and the same
guarantee as the staging route, at half the bytes.

* The version is claimed when the upload starts (its keys must be known), with
  the claim marker of ``claims.claim_version``. The marker stays until the
  publish is over or the build is discarded; ``retention.sweep_staging`` takes an
  abandoned marker as "this export died" and calls ``abandon``: its uploads are
  aborted and what was completed of the version removed.
* Every part is confirmed as it lands: the ETag S3 returns for a part is the MD5
  of the bytes it received (compared with the MD5 of the bytes read here), or,
  for SSE-KMS objects whose ETags are no MD5, the CRC32 checksum S3 computed and
  botocore sent. A completed object is checked again (size, multipart ETag)
  before ``saved_model.pb`` is completed.
* A retried publish (a Prefect task on its second attempt) completes what is
  still pending and uploads again, from the local build, whatever a failed
  attempt removed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsspec.asyn import sync

from export_core.errors import VerificationError
from export_core.storage.backend import (
    LAST_FILES,
    MANIFEST_FILE,
    Destination,
    quiet_rm,
    storage_error,
)
from export_core.storage.claims import claim_marker
from export_core.storage.endpoint import is_s3
from export_core.storage.multipart import (
    PendingUpload,
    UploadStarted,
    abort_upload,
    complete_upload,
    list_uploads,
    send_file,
)
from export_core.storage.transfer import ProgressFn, put_file, report_progress, s3_etag


@dataclass(frozen=True)
class DirectStage:
    """A build uploaded into claimed version ``version`` at ``target``, all pending."""

    version: int
    target: str
    uploads: tuple[PendingUpload, ...]

    def __str__(self) -> str:
        return f"{self.target} ({len(self.uploads)} pending uploads)"


def usable(dest: Destination, timestamped: bool) -> bool:
    """Whether builds for ``dest`` go straight into their version (S3, timestamped)."""
    return timestamped and is_s3(dest.fs)


def upload(
    dest: Destination,
    build_dir: str,
    files: list[str],
    version: int,
    progress: ProgressFn | None = None,
) -> DirectStage:
    """Starts a multipart upload per file into version ``version`` and sends every part.

    Files go one after the other (progress is reported per file), the parts of
    each in parallel. Nothing is completed: the version stays invisible.

    Raises:
        StorageError: An upload failed; every upload started here is aborted.
        VerificationError: S3 received other bytes than were sent.
    """
    target = dest.join(str(version))
    total = sum(os.path.getsize(os.path.join(build_dir, f)) for f in files)
    done, uploads = 0, []
    try:
        for rel in files:
            local = os.path.join(build_dir, rel)
            uploads.append(sync(dest.fs.loop, send_file, dest.fs, local, f"{target}/{rel}", rel))
            done += uploads[-1].size
            report_progress(progress, done, total)
    except BaseException as exc:
        started = list(uploads)
        if isinstance(exc, UploadStarted):
            started.append(exc.upload)
            exc = exc.__cause__ or exc
        _abort(dest, target, started)
        if isinstance(exc, VerificationError | KeyboardInterrupt | SystemExit):
            raise exc from None
        raise storage_error(f"Uploading to '{dest.uri}' failed", exc) from exc
    return DirectStage(version, target, tuple(uploads))


def confirm_staged(staged: DirectStage, expected: Mapping[str, Mapping[str, Any]]) -> None:
    """Checks that the pending uploads are exactly the build's files, by size.

    Raises:
        VerificationError: A file is missing, extra, or of another size.
    """
    sizes = {u.rel: u.size for u in staged.uploads}
    files = {rel: int(entry["size"]) for rel, entry in expected.items() if rel != MANIFEST_FILE}
    if sizes != files:
        wrong = sorted(set(sizes.items()) ^ set(files.items()))
        raise VerificationError(
            f"The upload to {staged.target} does not match the build ({wrong}). Nothing was "
            "published."
        )


def complete(dest: Destination, build_dir: str, files: list[str], staged: DirectStage) -> None:
    """Makes the version visible: completes every upload, ``saved_model.pb`` last, then
    writes the manifest (``files`` is in publish order, see ``publish.ordered_files``).

    A file whose upload is gone (a failed earlier attempt removed it) is uploaded
    again from ``build_dir``. On failure what became visible is removed again; the
    claim stays for the caller's retry or ``discard``.

    Raises:
        StorageError: The store refused; no file of the version is left visible.
        VerificationError: A completed object is not the build's file.
    """
    pending = {u.rel: u for u in staged.uploads}
    try:
        for rel in files:
            if rel in LAST_FILES:
                rest = [f for f in files if f not in LAST_FILES and f != MANIFEST_FILE]
                _check_completed(dest, build_dir, staged, rest)
            if rel in pending:
                _complete_one(dest, build_dir, staged.target, pending[rel])
            else:
                put_file(dest.fs, os.path.join(build_dir, rel), f"{staged.target}/{rel}")
    except BaseException as exc:
        _remove_visible(dest, staged.target)
        if isinstance(exc, VerificationError | KeyboardInterrupt | SystemExit):
            raise
        raise storage_error(f"Publishing to '{dest.uri}' failed", exc) from exc


def _complete_one(dest: Destination, build_dir: str, target: str, pending: PendingUpload) -> None:
    try:
        complete_upload(dest.fs, f"{target}/{pending.rel}", pending)
    except (FileNotFoundError, OSError):
        # Gone (an earlier attempt completed or aborted it): upload the file again.
        put_file(dest.fs, os.path.join(build_dir, pending.rel), f"{target}/{pending.rel}")
    dest.fs.invalidate_cache(f"{target}/{pending.rel}")


def _check_completed(
    dest: Destination, build_dir: str, staged: DirectStage, rels: list[str]
) -> None:
    """Size and ETag of each completed object, before ``saved_model.pb`` makes it whole."""
    dest.fs.invalidate_cache(staged.target)
    found = dest.fs.find(staged.target, detail=True)
    landed = {path[len(staged.target) :].lstrip("/"): info for path, info in found.items()}
    pending = {u.rel: u for u in staged.uploads}
    where = dest.uri_of(staged.target)
    for rel in rels:
        info, local = landed.get(rel), os.path.join(build_dir, rel)
        size = os.path.getsize(local)
        if info is None or int(info.get("size") or 0) != size:
            raise VerificationError(
                f"{rel} is missing or has the wrong size at {where} after completing its "
                "upload. Nothing was published."
            )
        if rel in pending and pending[rel].etag is None:
            continue  # SSE-KMS: no MD5 to compare; every part's CRC32 was confirmed
        etag = str(info.get("ETag") or "").strip('"')
        # Completed from its parts, or uploaded again from the build by put_file.
        if etag != getattr(pending.get(rel), "etag", None) and etag != s3_etag(local, size):
            raise VerificationError(
                f"{rel} landed at {where} with ETag {etag}, not the build's. Nothing was published."
            )


def _remove_visible(dest: Destination, target: str) -> None:
    """Takes a version apart in the reverse of publish order (manifest, proto, rest)."""
    quiet_rm(dest.fs, [f"{target}/{name}" for name in (MANIFEST_FILE, *LAST_FILES)])
    quiet_rm(dest.fs, [target], recursive=True)


def discard(dest: Destination, staged: DirectStage) -> None:
    """Undoes an unpublished build: aborts its uploads, removes its claim.

    After a successful publish (its claim is gone) there is nothing to do.
    """
    marker = claim_marker(dest, staged.version)
    try:
        if not dest.fs.exists(marker):
            return
    except Exception:  # noqa: BLE001 - best effort: fall through and clean up
        pass
    abandon(dest, staged.version)
    quiet_rm(dest.fs, [marker])


def abandon(dest: Destination, version: int) -> list[str]:
    """Aborts every pending upload under version ``version`` and, unless it holds a
    manifest (a finished publish), removes what of it became visible.

    For the owner of the version's claim (``discard``) or a sweep that found the
    claim abandoned. Returns the keys whose uploads were aborted.

    Raises:
        StorageError: The uploads could not be listed.
    """
    target = dest.join(str(version))
    aborted = []
    if is_s3(dest.fs):
        bucket, prefix, _ = dest.fs.split_path(target + "/")
        try:
            listed = list_uploads(dest.fs, bucket, prefix)
        except Exception as exc:  # noqa: BLE001 - backends raise their own error types
            where = dest.uri_of(target)
            raise storage_error(f"Listing the uploads under '{where}' failed", exc) from exc
        for key, upload_id in listed:
            abort_upload(dest.fs, bucket, key, upload_id)
            aborted.append(key)
    dest.fs.invalidate_cache(target)
    if not dest.fs.exists(f"{target}/{MANIFEST_FILE}"):
        _remove_visible(dest, target)
    return aborted


def _abort(dest: Destination, target: str, uploads: list[PendingUpload]) -> None:
    for pending in uploads:
        bucket, key, _ = dest.fs.split_path(f"{target}/{pending.rel}")
        abort_upload(dest.fs, bucket, key, pending.upload_id)
