"""Requiring signed versions before a label moves or TF Serving is told to load them.

``promote --require-signed`` and ``serving-config --require-signed`` check each version
they would hand to serving: its manifest signed by the given key for its own number,
and every file's bytes equal to what the signed manifest lists (each file is read once,
streamed, never held whole). No TensorFlow and no local copy: only fsspec.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from export_core.artifacts.signing import check_signature, load_public_key
from export_core.errors import ExportValidationError, VerificationError
from export_core.storage.backend import MANIFEST_FILE, SIGNATURE_FILE, Destination, storage_error
from export_core.storage.transfer import HASH_CHUNK


def require_signed(
    base: str,
    versions: Iterable[int],
    public_key: Any,
    storage_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Checks that each of ``versions`` of ``base`` is signed by ``public_key``'s owner.

    Returns, per version, the key fingerprint and the version that were signed.

    Raises:
        ExportValidationError: ``public_key`` is not an Ed25519 public key.
        VerificationError: A version is unsigned, signed by another key or for another
            number, or a file differs from its signed manifest.
        StorageError: The store could not be read.
    """
    key = load_public_key(public_key)
    dest = Destination.parse(base, storage_options)
    dest.check_reachable()
    return [check_signed_version(dest, version, key) for version in versions]


def check_signed_version(dest: Destination, version: int, key: Any) -> dict[str, Any]:
    """One version of ``dest``: its signature, then every file against the manifest.

    Raises:
        ExportValidationError: No such complete version.
        VerificationError: See ``check_signed_folder``.
    """
    folder, where = dest.join(str(version)), dest.child_uri(str(version))
    dest.fs.invalidate_cache(folder)
    if not dest.fs.exists(f"{folder}/{MANIFEST_FILE}"):
        raise ExportValidationError(
            f"{where} is not a complete version (it has no {MANIFEST_FILE}). List them: "
            f"keras-export versions {dest.uri}"
        )
    return check_signed_folder(dest.fs, folder, where, version, key)


def check_signed_folder(
    fs: Any, folder: str, where: str, version: int | None, key: Any
) -> dict[str, Any]:
    """The folder ``folder`` of filesystem ``fs`` (``where`` in messages), published as
    ``version`` (None: a folder not named as a version): signed by ``key`` for that
    number, and exactly the files its manifest lists, byte for byte.

    Raises:
        VerificationError: No manifest or signature, another key, another number, a
            replaced manifest, or a file that differs from the signed manifest.
    """
    manifest = _read(fs, f"{folder}/{MANIFEST_FILE}", where)
    if manifest is None:
        raise VerificationError(
            f"{where} is not signed: it has no {MANIFEST_FILE}. Export it again with a signing key."
        )
    signature = _read(fs, f"{folder}/{SIGNATURE_FILE}", where)
    signed = check_signature(manifest, signature, version, key, where)
    _check_files(fs, folder, json.loads(manifest).get("files") or {}, where)
    return signed


def _read(fs: Any, path: str, where: str) -> bytes | None:
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Reading '{where}' failed", exc) from exc


def _check_files(fs: Any, folder: str, files: Mapping[str, Mapping[str, Any]], where: str) -> None:
    """Exactly the listed files, each of the listed size and sha256 (as
    ``manifest.check_files`` checks a local folder)."""
    try:
        found = fs.find(folder, detail=True)
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Listing '{where}' failed", exc) from exc
    sizes = {
        path[len(folder) :].lstrip("/"): int(info.get("size") or 0)
        for path, info in found.items()
        if info.get("type") != "directory"
    }
    present = set(sizes) - {MANIFEST_FILE, SIGNATURE_FILE}
    missing, unexpected = sorted(set(files) - present), sorted(present - set(files))
    if missing or unexpected:
        raise VerificationError(
            f"{where} does not match its signed manifest: missing {missing}, unexpected "
            f"{unexpected}. Do not serve this version."
        )
    for rel, info in sorted(files.items()):
        if sizes[rel] != info["size"] or _sha256(fs, f"{folder}/{rel}", where) != info["sha256"]:
            raise VerificationError(
                f"{rel} in {where} differs from its signed manifest (size/sha256): the "
                "version was changed after it was signed. Do not serve this version."
            )


def _sha256(fs: Any, path: str, where: str) -> str:
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Reading '{where}' failed", exc) from exc
    return digest.hexdigest()
