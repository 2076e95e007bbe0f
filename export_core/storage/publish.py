"""How a finished build becomes a visible version: staging, claims, publishing.

* local disk: the SavedModel is built in a hidden staging folder next to the
  version folder and renamed into place — ``rename(2)`` is atomic, so a reader
  sees either no version folder or a complete one;
* S3, timestamped: the build is uploaded straight into its claimed version as
  multipart uploads completed only once it is verified (``direct``), so every
  byte is sent once;
* any other backend (object stores have no atomic rename): the build is uploaded
  to a staging prefix whose name TensorFlow Serving ignores (it only loads
  integer-named folders), then copied into the version folder with
  ``saved_model.pb`` after every other file, because serving systems take its
  presence as "this version is complete" (TensorFlow's own ``save`` writes it
  last for the same reason), and the manifest after it, so that retention can
  take the manifest's presence as "this publish is over".

The signature binds the manifest to the version number, so ``publish`` has a ``seal``
write it once the number is claimed; it goes up after the rest, before ``saved_model.pb``.

Staging names and claim markers (``claims``) record their creation time
(``backend``), which is how ``retention`` tells an abandoned one from one a live
export still uses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from export_core.errors import StorageError, VersionExistsError
from export_core.storage import direct, local_builds
from export_core.storage.backend import (
    LAST_FILES,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Destination,
    quiet_rm,
    storage_error,
)
from export_core.storage.claims import claim_version, release_claim
from export_core.storage.direct import DirectStage
from export_core.storage.names import is_staging_name, new_staging_name, staging_owner_gone
from export_core.storage.transfer import (
    ProgressFn,
    confirm_landed,
    put_file,
    report_progress,
)

Staged = str | DirectStage  # a staging prefix, or uploads pending in a claimed version
Seal = Callable[[str, int | None], None]  # (build folder, version or None): the signature
AFTER_STAGING = (SIGNATURE_FILE, MANIFEST_FILE)  # written after verification: not staged


@dataclass(frozen=True)
class Published:
    """Where a version landed."""

    path: str
    version: int | None


def new_build_dir(dest: Destination | None, timestamped: bool) -> str:
    """A private local folder to build the SavedModel in.

    For local destinations it sits beside the final folder (same filesystem, so the
    final rename is atomic) under a name TensorFlow Serving ignores, which records
    this host and process; the staging folders there of this host's exports whose
    process is gone (killed) are removed first.

    Raises:
        StorageError: The staging folder could not be created.
    """
    if dest is None or not dest.is_local:  # None: a remote destination
        return local_builds.new_build_dir()  # and removes those of killed exports
    parent = dest.path if timestamped else os.path.dirname(os.path.abspath(dest.path))
    _remove_orphaned_staging(parent)
    prefix = "" if timestamped else f".{os.path.basename(dest.path)}"
    name = f"{prefix}{new_staging_name(owner=True)}"
    try:
        os.makedirs(parent, exist_ok=True)
        build_dir = os.path.join(parent, name)
        os.mkdir(build_dir)
    except OSError as exc:
        raise StorageError(f"Cannot create a staging folder under '{parent}': {exc}") from exc
    return build_dir


def _remove_orphaned_staging(parent: str) -> None:
    """Removes the staging folders under ``parent`` (``.staging-…``, ``.<leaf>.staging-…``)
    whose export, a process of this host, is gone: a killed export leaves its whole
    build there."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if is_staging_name(name) and staging_owner_gone(name):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def remove_build_dir(build_dir: str) -> None:
    shutil.rmtree(build_dir, ignore_errors=True)


def ordered_files(build_dir: str) -> list[str]:
    """Relative paths of the build: the rest, the signature, ``saved_model.pb``, the manifest."""
    files = []
    for root, _dirs, names in os.walk(build_dir):
        for name in names:
            files.append(os.path.relpath(os.path.join(root, name), build_dir).replace(os.sep, "/"))
    return sorted(
        files, key=lambda f: (f == MANIFEST_FILE, f in LAST_FILES, f == SIGNATURE_FILE, f)
    )


def stage(
    build_dir: str,
    dest: Destination,
    timestamped: bool,
    progress: ProgressFn | None = None,
    build_id: str | None = None,
) -> Staged | None:
    """Uploads the build to a remote destination, invisibly.

    Local builds already sit in their staging folder on the destination's disk;
    for them this returns None. On S3 (timestamped) the build goes into a version
    claimed now (for ``build_id``), as pending uploads (``direct``); elsewhere to a
    staging prefix. Files stream from disk, so no checkpoint shard is ever held in
    memory whole.

    Raises:
        StorageError: The upload failed; what it uploaded is removed (and the claim).
        VerificationError: S3 received other bytes than were sent.
    """
    if dest.is_local:
        return None
    files = ordered_files(build_dir)
    if direct.usable(dest, timestamped):
        version = claim_version(dest, build_id=build_id)
        try:
            return direct.upload(dest, build_dir, files, version, progress)
        except BaseException:
            release_claim(dest, version)
            raise
    staging = _remote_staging(dest, timestamped)
    total = sum(os.path.getsize(os.path.join(build_dir, f)) for f in files)
    done = 0
    try:
        for f in files:  # one by one, so progress is reported per file
            put_file(dest.fs, os.path.join(build_dir, f), f"{staging}/{f}")
            done += os.path.getsize(os.path.join(build_dir, f))
            report_progress(progress, done, total)
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        quiet_rm(dest.fs, [staging], recursive=True)
        raise storage_error(f"Uploading to '{dest.uri}' failed", exc) from exc
    return staging


def _remote_staging(dest: Destination, timestamped: bool) -> str:
    """A prefix TensorFlow Serving ignores; beside the target when it is the base itself."""
    name = new_staging_name()
    if timestamped:
        return dest.join(name)
    parent, _, leaf = dest.path.rstrip("/").rpartition("/")
    return f"{parent}/.{leaf}{name}" if parent else f".{leaf}{name}"


def confirm_staged(
    dest: Destination, build_dir: str, staging: Staged, expected: dict[str, Any]
) -> dict[str, str]:
    """Checks that what ``stage`` uploaded is the build (see ``transfer.confirm_landed``;
    pending uploads were confirmed part by part as they landed, here by size).

    Raises:
        VerificationError: A file is missing, extra, or differs.
    """
    if isinstance(staging, DirectStage):
        direct.confirm_staged(staging, expected)
        return {u.rel: "etag" if u.etag else "crc32" for u in staging.uploads}
    return confirm_landed(dest, build_dir, staging, expected)


def publish(
    build_dir: str,
    dest: Destination,
    timestamped: bool,
    staging: Staged | None = None,
    build_id: str | None = None,
    seal: Seal | None = None,
) -> Published:
    """Makes a finished, verified build visible at the destination.

    The manifest (if the build has one) is the last file to appear. ``build_id`` is
    recorded in the claim marker (object stores), as in the manifest. ``seal(build_dir,
    version)`` runs once the version is claimed, before anything of it is visible.

    Raises:
        VersionExistsError: ``timestamped=False`` and the folder filled up meanwhile.
        StorageError: The destination could not be written; nothing is left visible.
    """
    seal = seal or (lambda folder, version: None)
    if dest.is_local:
        return _publish_local(build_dir, dest, timestamped, seal)
    if staging is None:
        staging = stage(build_dir, dest, timestamped, build_id=build_id)
    if isinstance(staging, DirectStage):
        seal(build_dir, staging.version)  # a failure keeps the claim for cleanup or a retry
        return _publish_direct(build_dir, dest, staging)
    return _publish_remote(build_dir, dest, timestamped, staging, build_id, seal)


def cleanup(build_dir: str, dest: Destination, staging: Staged | None) -> None:
    """Removes the local build and what was staged remotely, whatever happened."""
    remove_build_dir(build_dir)
    if staging is not None:
        cleanup_staging(dest, staging)


def cleanup_staging(dest: Destination, staging: Staged) -> None:
    """Removes a staging prefix, or aborts an unpublished build's pending uploads and
    releases its claim (nothing to do once it is published)."""
    if isinstance(staging, DirectStage):
        direct.discard(dest, staging)
    else:
        quiet_rm(dest.fs, [staging], recursive=True)


def _publish_local(build_dir: str, dest: Destination, timestamped: bool, seal: Seal) -> Published:
    if not timestamped:
        seal(build_dir, None)
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
        seal(build_dir, version)
        os.rename(build_dir, target)  # onto the empty folder we claimed: atomic
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        raise StorageError(f"Cannot move the export into '{target}': {exc}") from exc
    return Published(target, version)


def _publish_remote(
    build_dir: str,
    dest: Destination,
    timestamped: bool,
    staging: str,
    build_id: str | None,
    seal: Seal,
) -> Published:
    version = None
    written: list[str] = []
    try:
        if timestamped:
            version = claim_version(dest, build_id=build_id)
            target = dest.join(str(version))
        else:
            dest.require_empty()
            target = dest.path
        seal(build_dir, version)
        for f in ordered_files(build_dir):  # the rest, saved_model.pb, then the manifest
            if f in AFTER_STAGING:
                dest.fs.put_file(os.path.join(build_dir, f), f"{target}/{f}")
            else:
                dest.fs.copy(f"{staging}/{f}", f"{target}/{f}")
            written.append(f"{target}/{f}")
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        if isinstance(exc, VersionExistsError):
            raise
        quiet_rm(dest.fs, list(reversed(written)))
        if version is not None:  # our claimed folder: leave no (pseudo-)directory behind
            _remove_claimed_folder(dest, version)
        raise storage_error(f"Publishing to '{dest.uri}' failed", exc) from exc
    finally:
        if version is not None:
            release_claim(dest, version)
    return Published(dest.child_uri(None if version is None else str(version)), version)


def _publish_direct(build_dir: str, dest: Destination, staged: DirectStage) -> Published:
    """Completes the pending uploads into their claimed version; releases the claim once
    the manifest is there. A failure keeps the claim (for a retry, or ``cleanup``)."""
    direct.complete(dest, build_dir, ordered_files(build_dir), staged)
    release_claim(dest, staged.version)
    return Published(dest.child_uri(str(staged.version)), staged.version)


def _remove_claimed_folder(dest: Destination, version: int) -> None:
    folder = dest.join(str(version))
    quiet_rm(dest.fs, [folder], recursive=True)
    with contextlib.suppress(OSError, ValueError):
        if dest.fs.isdir(folder):
            dest.fs.rmdir(folder)
