"""Many exports at once: a batch flow whose tasks run on threads or a Dask cluster."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from export_core import run_export
from export_core.model import source_file
from keras_export.credentials import StorageAccess, storage_access
from keras_export.flows.export import model_flow, warn_about_secrets
from keras_export.signing_key import signing_key_source


@task(name="export-one", cache_policy=NO_CACHE)
def export_one(spec: dict, access: StorageAccess, source_access: StorageAccess) -> dict:
    """One export of a batch, straight through ``export_core`` in this worker."""
    spec = dict(spec)
    objects = source_file.resolve_custom_objects(spec.pop("custom_objects", None))
    options, source_options = access.storage_options(), source_access.storage_options()
    signer = signing_key_source(spec.pop("signing_key", None))  # a Secret block, by name
    uri = spec.pop("model")
    model, source = source_file.load_keras_source_with_info(uri, objects, source_options)
    from prefect.runtime import task_run

    result = run_export(
        model,
        spec.pop("destination"),
        build_id=f"task-run-{task_run.id}",
        custom_objects=objects,
        input_signature=source_file.signature_from_json(spec.pop("input_signature", None)),
        sample_inputs=source_file.load_sample_inputs(
            spec.pop("sample_inputs", None), source_options
        ),
        source=source,
        storage_options=options,
        signing_key=signer() if signer else None,
        **spec,
    )
    return {
        "model": uri,
        "path": result.path,
        "version": result.version,
        "warnings": list(result.warnings),
    }


def batch_access(spec: dict, credentials: Any, source_credentials: Any):
    """Pops a batch entry's credentials and options into the two accesses it needs."""
    options = spec.pop("storage_options", None)
    own = spec.pop("credentials", None) or credentials
    own_source = spec.pop("source_credentials", None) or source_credentials
    access = storage_access(own, options)
    return access, storage_access(own_source, options) if own_source else access


@model_flow(
    name="export-keras-models", validate_parameters=False, task_runner=ThreadPoolTaskRunner()
)
def export_keras_models(
    exports: list[dict], credentials: Any = None, source_credentials: Any = None
) -> dict:
    """Exports many models in parallel; one failure does not stop the others.

    Each entry takes ``export_keras_model``'s parameters (``model`` must be a URI;
    ``credentials``/``source_credentials`` there override the batch's). The task
    runner defaults to threads; ``export_keras_models.with_options(
    task_runner=DaskTaskRunner(...))`` hands the work to a Dask cluster (pass saved
    blocks' names there: a block object lives in this process only).

    Returns:
        ``{"succeeded": n, "failed": n, "results": [...]}`` in input order.
    """
    logger = get_run_logger()
    futures = []
    for entry in exports:
        spec = dict(entry)
        warn_about_secrets(logger, spec.get("storage_options"))
        futures.append(
            export_one.submit(spec, *batch_access(spec, credentials, source_credentials))
        )
    results = []
    for spec, future in zip(exports, futures, strict=True):
        future.wait()
        if future.state.is_completed():
            results.append({"ok": True, **future.result()})
        else:
            error = future.state.result(raise_on_failure=False)
            results.append({"ok": False, "model": spec.get("model"), "error": str(error)})
            logger.error("Export of %s failed: %s", spec.get("model"), error)
    failed = sum(not r["ok"] for r in results)
    return {"succeeded": len(results) - failed, "failed": failed, "results": results}
