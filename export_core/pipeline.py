"""The steps after writing, shared by ``run_export`` and the Prefect flow.

verify-reload reads back what landed at the destination (the staging copy) and
checks it against the build's manifest and the in-memory model; publish then makes
the version visible, manifest last, and applies retention.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras

from export_core import manifest as mf
from export_core import storage
from export_core.validate import ExportPlan
from export_core.verify import ParityReport, verify_reload


def stage_build(
    build_dir: str,
    plan: ExportPlan,
    source: Mapping[str, Any] | None = None,
    progress: storage.ProgressFn | None = None,
):
    """Describes the build (manifest without parity) and uploads it to staging.

    ``progress(bytes_done, bytes_total)`` is called after each uploaded file.
    """
    draft = mf.build_manifest(build_dir, source=source)
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    staging = storage.stage(build_dir, dest, plan.timestamped, progress)
    return draft, staging


def verify_landed(
    build_dir: str,
    staging: str | None,
    model: keras.Model,
    plan: ExportPlan,
    draft: mf.Manifest,
    sample_inputs: Any = None,
    full: bool = False,
) -> ParityReport:
    """Checks the bytes at the destination and reloads them with TF's loaders."""
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    with storage.read_back(dest, build_dir, staging) as landed:
        mf.check_files(landed, draft)
        return verify_reload(landed, model, plan.inputs, plan.modes, sample_inputs, full)


def publish_version(
    build_dir: str,
    staging: str | None,
    plan: ExportPlan,
    draft: mf.Manifest,
    parity: ParityReport | None,
    keep_versions: int | None = None,
) -> tuple[storage.Published, list[int]]:
    """Writes the final manifest, makes the version visible, prunes old versions."""
    final = dataclasses.replace(draft, parity=parity.to_dict() if parity else None)
    mf.write_manifest(build_dir, final)
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    published = storage.publish(build_dir, dest, plan.timestamped, staging)
    pruned: list[int] = []
    if keep_versions and plan.timestamped:
        pruned = storage.prune_versions(dest, keep_versions, protect=published.version)
    return published, pruned
