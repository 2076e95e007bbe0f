"""Scheduled export: publish the newest trained model under a prefix, once."""

from __future__ import annotations

from prefect import flow, get_run_logger

from export_core import sources, sources_scan
from keras_export.flows.export import export_keras_model


@flow(name="export-newest-model", validate_parameters=False)
def export_newest_model(
    source_prefix: str,
    destination: str,
    storage_options: dict | None = None,
    serving_only: bool = False,
    keep_versions: int | None = None,
    custom_objects: list[str] | None = None,
) -> dict:
    """Exports the newest ``.keras`` file under ``source_prefix`` to ``destination``.

    The run is skipped when that exact file (by sha256) is already what the newest
    published version was exported from, so a frequent schedule costs one listing.

    Returns:
        ``{"skipped": True, "model": ..., "sha256": ...}`` or the export's result with
        ``"skipped": False``.
    """
    logger = get_run_logger()
    model = sources_scan.newest_keras_file(source_prefix, storage_options)
    digest = sources.source_info(model, storage_options)["sha256"]
    if digest == sources_scan.newest_published_sha256(destination, storage_options):
        logger.info("Skipping: %s (sha256 %s) is already the newest version", model, digest[:12])
        return {"skipped": True, "model": model, "sha256": digest}
    result = export_keras_model(
        model=model,
        destination=destination,
        storage_options=storage_options,
        serving_only=serving_only,
        keep_versions=keep_versions,
        custom_objects=custom_objects,
    )
    return {"skipped": False, **result}
