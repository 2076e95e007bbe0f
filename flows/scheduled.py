"""Scheduled export: publish the newest trained model under a prefix, once."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from export_core import sources, sources_scan
from keras_export.flows.export import _model_flow, export_keras_model, warn_about_secrets
from keras_export.tasks.credentials import StorageAccess, storage_access


@task(name="find-newest-model", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def find_newest(
    source_prefix: str, destination: str, source: StorageAccess, access: StorageAccess
) -> tuple[str, str, str | None]:
    """The newest ``.keras`` under the prefix, its sha256, and the newest published one's."""
    source_options = source.storage_options()
    model = sources_scan.newest_keras_file(source_prefix, source_options)
    digest = sources.source_info(model, source_options)["sha256"]
    published = sources_scan.newest_published_sha256(destination, access.storage_options())
    return model, digest, published


@_model_flow(name="export-newest-model", validate_parameters=False)
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

    The run is skipped when that exact file (by sha256) is already what the newest
    published version was exported from, so a frequent schedule costs one listing.
    ``credentials``/``source_credentials`` are blocks or their saved names, as for
    ``export_keras_model``.

    Returns:
        ``{"skipped": True, "model": ..., "sha256": ...}`` or the export's result with
        ``"skipped": False``.
    """
    logger = get_run_logger()
    warn_about_secrets(logger, storage_options)
    access = storage_access(credentials, storage_options)
    source = storage_access(source_credentials, storage_options) if source_credentials else access
    model, digest, published = find_newest(source_prefix, destination, source, access)
    if digest == published:
        logger.info("Skipping: %s (sha256 %s) is already the newest version", model, digest[:12])
        return {"skipped": True, "model": model, "sha256": digest}
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
