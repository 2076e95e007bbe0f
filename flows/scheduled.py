"""Scheduled export: publish the newest trained model under a prefix, once."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from export_core.registry import newest_source, versions
from keras_export.credentials import StorageAccess, storage_access
from keras_export.flows.export import export_keras_model, model_flow, warn_about_secrets


@task(name="find-newest-model", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def find_newest(
    source_prefix: str, destination: str, source: StorageAccess, access: StorageAccess
) -> tuple[str, bool, str | None]:
    """The newest ``.keras`` under the prefix, whether it is already published, and how
    that was decided (``"fingerprint"``: from the store's metadata, 0 bytes of the model
    read; ``"sha256"``: the file was hashed)."""
    source_options = source.storage_options()
    model, stored = newest_source.newest_keras_object(source_prefix, source_options)
    published = versions.newest_manifest_source(destination, access.storage_options())
    same, how = newest_source.unchanged(model, stored, published, source_options)
    return model, same, how


@model_flow(name="export-newest-model", validate_parameters=False)
def export_newest_model(
    source_prefix: str,
    destination: str,
    storage_options: dict | None = None,
    serving_only: bool = False,
    keep_versions: int | None = None,
    custom_objects: list[str] | None = None,
    credentials: Any = None,
    source_credentials: Any = None,
) -> dict:
    """Exports the newest ``.keras`` file under ``source_prefix`` to ``destination``.

    The run is skipped when that file is already what the newest published version
    was exported from. The store's metadata (S3 ETag and size, GCS checksums, local
    mtime, inode and size) decides that without reading the model, so a tick where
    nothing changed costs two listings and one manifest read; when the metadata
    differs, the file is hashed and compared by sha256.
    ``credentials``/``source_credentials`` are blocks or their saved names, as for
    ``export_keras_model``.

    Returns:
        ``{"skipped": True, "model": ..., "decided_by": "fingerprint"|"sha256"}`` or
        the export's result with ``"skipped": False``.
    """
    logger = get_run_logger()
    warn_about_secrets(logger, storage_options)
    access = storage_access(credentials, storage_options)
    source = storage_access(source_credentials, storage_options) if source_credentials else access
    model, same, how = find_newest(source_prefix, destination, source, access)
    if same:
        logger.info("Skipping: %s is already the newest version (by %s)", model, how)
        return {"skipped": True, "model": model, "decided_by": how}
    result = export_keras_model(
        model=model,
        destination=destination,
        storage_options=storage_options,
        serving_only=serving_only,
        keep_versions=keep_versions,
        custom_objects=custom_objects,
        credentials=credentials,
        source_credentials=source_credentials,
    )
    return {"skipped": False, **result}
