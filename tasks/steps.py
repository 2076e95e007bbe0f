"""One Prefect task per export step; each is a thin wrapper over ``export_core``.

TensorFlow steps receive models and traced graphs, which Prefect must not hash
(``NO_CACHE``) and which retrying would not fix. Only I/O steps retry: the
upload to staging and the publish.

The steps that touch storage (load-source, validate, stage, publish, discard)
receive a ``StorageAccess`` (a block reference and explicit options, see
``credentials``) and turn it into fsspec ``storage_options`` themselves; the plan
that travels between tasks holds none.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from export_core import pipeline, sources, storage
from export_core.clone import ModeClones, clone_per_mode
from export_core.errors import ExportError
from export_core.manifest import Manifest
from export_core.trace import TracedModes, trace_modes
from export_core.validate import ExportPlan, validate_export
from export_core.verify import ParityReport
from export_core.warmup import write_warmup
from export_core.write import WrittenFiles, write_checkpoint, write_proto
from keras_export.tasks.credentials import StorageAccess


def with_storage(plan: ExportPlan, access: StorageAccess) -> ExportPlan:
    """The plan with real storage options, for the duration of one storage step."""
    return dataclasses.replace(plan, storage_options=access.storage_options())


@contextlib.contextmanager
def naming_credentials(access: StorageAccess) -> Iterator[None]:
    """A step's errors say which credentials it used (never their values).

    Without credentials the error goes on as it is; with them, a new error of the same
    type says which, caused by the original (never by itself: a cycle in ``__cause__``
    hangs the error reporters that walk it).
    """
    try:
        yield
    except ExportError as exc:
        if not access.credentials:
            raise
        raise type(exc)(f"{exc} (credentials: {access.describe()})") from exc


@task(name="load-source", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def load_source(uri: str | None, custom_objects: dict, access: StorageAccess, samples: str | None):
    """The ``.keras`` model, its ``{"uri", "sha256", "fingerprint"}`` and the golden inputs.

    ``uri=None`` (a model given in process) loads only the golden inputs.
    """
    with naming_credentials(access):
        options = access.storage_options() if uri or samples else {}
        model, info = (
            sources.load_keras_source_with_info(uri, custom_objects, options)
            if uri
            else (None, None)
        )
        return model, info, sources.load_sample_inputs(samples, options)


@task(name="validate", cache_policy=NO_CACHE)
def validate(model: Any, destination: str, access: StorageAccess, **options: Any) -> ExportPlan:
    """Validates with the real options; the plan it returns holds none of them."""
    with naming_credentials(access):
        plan = validate_export(
            model, destination, storage_options=access.storage_options(), **options
        )
    return dataclasses.replace(plan, storage_options={})


@task(name="clone-per-mode", cache_policy=NO_CACHE)
def clone(model: Any, plan: ExportPlan, custom_objects: dict | None) -> ModeClones:
    return clone_per_mode(model, plan, custom_objects)


@task(name="trace", cache_policy=NO_CACHE)
def trace(clones: ModeClones, plan: ExportPlan) -> TracedModes:
    return trace_modes(clones, plan)


@task(name="write-checkpoint", cache_policy=NO_CACHE)
def checkpoint(traced: TracedModes, build_dir: str) -> WrittenFiles:
    return write_checkpoint(traced, build_dir)


@task(name="write-proto", cache_policy=NO_CACHE)
def proto(
    traced: TracedModes,
    plan: ExportPlan,
    build_dir: str,
    model: Any = None,
    samples: Any = None,
    warmup: bool = False,
) -> WrittenFiles:
    """The SavedModel proto and, given the model, the golden data verification uses
    (and TF Serving's warm-up requests built from it)."""
    written = write_proto(traced, plan, build_dir)
    if model is None:
        return written
    extra = [pipeline.write_golden_data(build_dir, model, plan, samples)]
    if warmup:
        extra.append(write_warmup(build_dir, plan.inputs))
    return WrittenFiles(written.files + tuple(extra))


@task(name="signature-gate", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def gate(
    build_dir: str,
    plan: ExportPlan,
    access: StorageAccess,
    label: str | None = None,
    allow_breaking: bool = False,
) -> dict | None:
    """The new serving signatures against the version they replace (see signature_gate)."""
    with naming_credentials(access):
        diff = pipeline.gate_signatures(
            build_dir, with_storage(plan, access), label, allow_breaking
        )
    if diff is not None:
        get_run_logger().info("%s", diff.describe())
    return diff.to_dict() if diff is not None else None


@task(name="stage", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def stage(
    build_dir: str,
    plan: ExportPlan,
    source: dict,
    access: StorageAccess,
    build_id: str | None = None,
) -> tuple[Manifest, storage.Staged | None]:
    logger = get_run_logger()

    def progress(done: int, total: int) -> None:
        logger.info("Uploaded %d / %d bytes (%.0f%%)", done, total, 100.0 * done / max(total, 1))

    with naming_credentials(access):
        return pipeline.stage_build(
            build_dir, with_storage(plan, access), source, progress, build_id
        )


@task(name="verify-reload", cache_policy=NO_CACHE)
def verify(
    build_dir: str,
    model: Any,
    plan: ExportPlan,
    samples: Any,
    full: bool = False,
    custom_objects: dict | None = None,
) -> ParityReport:
    return pipeline.verify_build(build_dir, model, plan, samples, full, custom_objects)


@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish(
    build_dir: str,
    staging: storage.Staged | None,
    plan: ExportPlan,
    draft: Manifest,
    parity: ParityReport,
    keep_versions: int | None,
    access: StorageAccess,
    build_id: str | None = None,
    lineage: dict | None = None,
) -> pipeline.Outcome:
    """Publishes once per build: a retry (of this task or of the flow run) that finds
    its build already published returns that version; later problems are warnings."""
    from prefect.runtime import flow_run, task_run

    retried = (task_run.run_count or 1) > 1 or (flow_run.run_count or 1) > 1
    with naming_credentials(access):
        outcome = pipeline.publish_version(
            build_dir,
            staging,
            with_storage(plan, access),
            draft,
            parity,
            keep_versions,
            build_id,
            retried,
            lineage,
        )
    logger = get_run_logger()
    if outcome.reused:
        logger.info("Build %s was already published as %s", build_id, outcome.published.path)
    for warning in outcome.warnings:
        logger.warning("%s", warning)
    return outcome


@task(name="discard", cache_policy=NO_CACHE)
def discard(
    build_dir: str | None, plan: ExportPlan, access: StorageAccess, staging: storage.Staged | None
):
    """Removes the local build and what was staged remotely (after success or failure)."""
    if build_dir is not None:
        storage.remove_build_dir(build_dir)
    if staging is not None:
        dest = storage.Destination.parse(plan.destination, access.storage_options())
        storage.cleanup_staging(dest, staging)
