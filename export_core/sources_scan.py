"""Finding the newest model under a source prefix, and whether it is already published."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from export_core import storage
from export_core.errors import ExportValidationError
from export_core.registry import list_versions


def newest_keras_file(prefix: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The URI of the most recently modified ``.keras`` file under ``prefix``.

    Raises:
        ExportValidationError: No ``.keras`` file is found there.
    """
    source = storage.Destination.parse(prefix, storage_options)
    source.check_reachable()
    try:
        found = [p for p in source.fs.find(source.path) if p.endswith(".keras")]
    except FileNotFoundError:
        found = []
    if not found:
        raise ExportValidationError(
            f"No .keras file under '{prefix}'. Point source_prefix at the folder your "
            "training jobs save models into (model.save('.../model.keras'))."
        )
    newest = max(found, key=lambda p: (source.fs.modified(p), p))
    relative = newest[len(source.path) :].lstrip("/")
    return source.child_uri(relative) if relative else source.uri


def newest_published_sha256(
    destination: str, storage_options: Mapping[str, Any] | None = None
) -> str | None:
    """The source sha256 recorded by the newest complete version, if any."""
    listed = list_versions(destination, storage_options, missing_ok=True)
    versions = [v for v in listed if v.complete]
    return versions[-1].source_sha256 if versions else None
