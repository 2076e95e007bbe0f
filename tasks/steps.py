"""One Prefect task per export step; each is a thin wrapper over ``export_core``.

TensorFlow steps receive models and traced graphs, which Prefect must not hash
(``NO_CACHE``) and which retrying would not fix. Only I/O steps retry: the
upload to staging and the publish.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from export_core import pipeline, storage
from export_core.clone import ModeClones, clone_per_mode
from export_core.manifest import Manifest
from export_core.trace import TracedModes, trace_modes
from export_core.validate import ExportPlan, validate_export
from export_core.verify import ParityReport
from export_core.write import WrittenFiles, write_checkpoint, write_proto


@task(name="validate", cache_policy=NO_CACHE)
def validate(model: Any, destination: str, **options: Any) -> ExportPlan:
    return validate_export(model, destination, **options)


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
    traced: TracedModes, plan: ExportPlan, build_dir: str, model: Any = None, samples: Any = None
) -> WrittenFiles:
    """The SavedModel proto and, given the model, the golden data verification uses."""
    written = write_proto(traced, plan, build_dir)
    if model is None:
        return written
    return WrittenFiles(
        written.files + (pipeline.write_golden_data(build_dir, model, plan, samples),)
    )


@task(name="stage", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def stage(build_dir: str, plan: ExportPlan, source: dict) -> tuple[Manifest, str | None]:
    logger = get_run_logger()

    def progress(done: int, total: int) -> None:
        logger.info("Uploaded %d / %d bytes (%.0f%%)", done, total, 100.0 * done / max(total, 1))

    return pipeline.stage_build(build_dir, plan, source, progress)


@task(name="verify-reload", cache_policy=NO_CACHE)
def verify(
    build_dir: str, model: Any, plan: ExportPlan, samples: Any, full: bool = False
) -> ParityReport:
    return pipeline.verify_build(build_dir, model, plan, samples, full)


@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish(
    build_dir: str,
    staging: str | None,
    plan: ExportPlan,
    draft: Manifest,
    parity: ParityReport,
    keep_versions: int | None,
) -> tuple[storage.Published, list[int]]:
    return pipeline.publish_version(build_dir, staging, plan, draft, parity, keep_versions)
