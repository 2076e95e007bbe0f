"""Finding the newest model under a source prefix, and whether it is already published."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from export_core import storage
from export_core.errors import ExportValidationError
from export_core.model import source_file


def newest_keras_object(
    prefix: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, dict | None]:
    """The newest ``.keras`` file under ``prefix`` and its fingerprint, from one listing.

    Raises:
        ExportValidationError: No ``.keras`` file is found there.
    """
    source = storage.Destination.parse(prefix, storage_options)
    source.check_reachable()
    source.fs.invalidate_cache(source.path)  # a long-lived worker must see new uploads
    try:
        found = {
            p: info
            for p, info in source.fs.find(source.path, detail=True).items()
            if p.endswith(".keras")
        }
    except FileNotFoundError:
        found = {}
    if not found:
        raise ExportValidationError(
            f"No .keras file under '{prefix}'. Point source_prefix at the folder your "
            "training jobs save models into (model.save('.../model.keras'))."
        )
    newest = max(found, key=lambda p: (source.fs.modified(p), p))
    relative = newest[len(source.path) :].lstrip("/")
    uri = source.child_uri(relative) if relative else source.uri
    return uri, source_file.fingerprint(found[newest])


def unchanged(
    model: str,
    stored: dict | None,
    published: Mapping[str, Any] | None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[bool, str | None]:
    """Whether ``model`` is what ``published`` was exported from, and how that was decided.

    The store's metadata decides without reading the model when both fingerprints
    exist; only when they differ (or one is missing) and the sizes could match is the
    file hashed and compared by sha256. Returns ``(unchanged, "fingerprint"|"sha256"|None)``.
    """
    if not published or not published.get("sha256"):
        return False, None
    before = published.get("fingerprint")
    if stored is not None and before == stored:
        return True, "fingerprint"
    size_before = (before or {}).get("size")
    if stored is not None and size_before is not None and size_before != stored.get("size"):
        return False, None
    hashed = source_file.source_info(model, storage_options)["sha256"]
    return hashed == published["sha256"], "sha256"
