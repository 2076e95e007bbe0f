"""The whole export, as the original API offered it, composed of the step functions.

validate → clone-per-mode → trace → write-checkpoint → write-proto → verify-reload
→ publish. The Prefect flow calls the same steps one task at a time.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import keras

from export_core import pipeline, storage
from export_core.errors import ExportValidationError
from export_core.golden import write_golden
from export_core.heap import export_scope
from export_core.lineage import check_metadata, collect_lineage
from export_core.preflight import check_keep
from export_core.staged import build_staged
from export_core.validate import validate_export
from export_core.verify import FULL, ParityReport, golden_for
from export_core.warmup import write_warmup

log = logging.getLogger(__name__)


class StepClock:
    """Records the wall time of each step: call it with a step's name when it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._clock, 4)
        self._clock = now


@dataclass(frozen=True)
class ExportResult:
    """What an export produced.

    Attributes:
        path: Path or URI of the SavedModel folder (the version folder when timestamped).
        version: The integer version, or None when ``timestamped=False``.
        modes: The modes exported, e.g. ``("serve", "train", "eval")``.
        parity: The verify-reload report, or None when verification was switched off.
        seconds: Wall time per step.
        warnings: What went wrong after the version became visible (retention):
            the version is published all the same.
    """

    path: str
    version: int | None
    modes: tuple[str, ...]
    parity: ParityReport | None
    seconds: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def export_saved_model(
    model: keras.Model,
    saved_model_path: Any,
    custom_objects: Mapping[str, Any] | None = None,
    as_text: bool | None = False,
    input_signature: Any = None,
    serving_only: bool = False,
    *,
    timestamped: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    modes: Sequence[str] | None = None,
) -> str:
    """Exports a Keras model as a SavedModel with serve, train and eval MetaGraphs.

    Re-creates ``tf.contrib.saved_model.save_keras_model`` (r1.13, ``timestamped=True``)
    and ``tf.keras.experimental.export_saved_model`` (r1.14, ``timestamped=False``)
    for Keras 3. The train and eval graphs are written when the model is compiled
    with an optimizer and a loss, unless ``serving_only``.

    Args:
        model: The Keras model. It is not modified (an unbuilt model given an
            ``input_signature`` is built from it, as in the original API).
        saved_model_path: Local path or fsspec URI (``file://``, ``s3://``, ``gs://``...).
        custom_objects: Names to classes/functions the model's config refers to.
        as_text: Write ``saved_model.pbtxt`` instead of ``saved_model.pb``.
        input_signature: ``tf.TensorSpec`` (or list/dict of them) overriding the
            model's inputs.
        serving_only: Export only the ``serve`` MetaGraph.
        timestamped: Write into ``<saved_model_path>/<int(time.time())>`` (the next
            free integer if taken) instead of into ``saved_model_path`` itself.
        storage_options: Options for the destination's fsspec filesystem.
        modes: The MetaGraphs to write, e.g. ``("serve", "eval")``; ``serve`` is
            always among them (``"serving"``, ``"training"``, ``"evaluation"`` are
            accepted too). Default: all three for a compiled model, else serve.

    Returns:
        The path (or URI) of the folder holding the SavedModel.

    Raises:
        UnsupportedModelError: Subclassed model without get_config and not serving_only.
        ExportValidationError: Invalid model, signature, options or destination.
        VersionExistsError: ``timestamped=False`` and the folder is not empty.
        VerificationError: The written model did not reload or match; nothing published.
        StorageError: The destination could not be written; nothing published.
    """
    result = run_export(
        model,
        saved_model_path,
        custom_objects=custom_objects,
        as_text=bool(as_text),
        input_signature=input_signature,
        serving_only=serving_only,
        timestamped=timestamped,
        storage_options=storage_options,
        modes=modes,
    )
    return result.path


@export_scope()
def run_export(
    model: keras.Model,
    saved_model_path: Any,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    as_text: bool = False,
    input_signature: Any = None,
    serving_only: bool = False,
    timestamped: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    sample_inputs: Any = None,
    verify: bool | str = True,
    keep_versions: int | None = None,
    source: Mapping[str, Any] | None = None,
    modes: Sequence[str] | None = None,
    build_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    compare_label: str | None = None,
    allow_breaking_signature: bool = False,
    warmup: bool = False,
    cast_inputs: bool = False,
) -> ExportResult:
    """``export_saved_model`` returning the full ``ExportResult``.

    ``sample_inputs`` (dict by input name, list, or one array) are the golden
    inputs verify-reload compares on; ``verify=False`` skips that step and
    ``verify="full"`` loads every MetaGraph with both loaders (see ``verify``).
    ``keep_versions`` prunes the oldest complete versions beyond that many after a
    successful publish; ``source`` (e.g. ``{"uri": ..., "sha256": ...}``) goes into
    the manifest, and so does ``build_id`` (default: a new random id), which names
    this export in its claim and manifest. ``metadata`` (a JSON-able dict: training
    metrics, dataset version...) goes into the manifest's lineage. Before publishing,
    the serving signatures are compared with the version holding ``compare_label``
    (default: the newest); breaking changes fail the export unless
    ``allow_breaking_signature`` (see ``signature_gate``). ``warmup`` writes
    ``assets.extra/tf_serving_warmup_requests`` from the golden inputs.
    ``cast_inputs`` accepts an ``input_signature`` whose dtypes differ from the model's
    inputs: the graphs cast them (the manifest records ``input_casts``); without it such
    a signature is refused, since it changes what clients must send.
    """
    if verify not in (True, False, FULL):
        raise ExportValidationError(f"verify must be True, False or {FULL!r}, received {verify!r}.")
    keep_versions = check_keep(keep_versions)
    metadata = check_metadata(metadata)
    lap = StepClock()
    plan = validate_export(
        model,
        saved_model_path,
        custom_objects=custom_objects,
        input_signature=input_signature,
        serving_only=serving_only,
        as_text=as_text,
        timestamped=timestamped,
        storage_options=storage_options,
        modes=modes,
        sample_inputs=sample_inputs,
        compare_label=compare_label,
        cast_inputs=cast_inputs,
    )
    lap("validate")
    # The model's outputs on the golden inputs first, while nothing else is held:
    # an eager Functional call keeps every layer's activations until it returns.
    golden = golden_for(model, plan.inputs, sample_inputs) if verify or warmup else None
    lap("golden")
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    build_id = build_id or uuid.uuid4().hex  # recorded in the claim and the manifest
    build_dir: str | None = None
    staging = None

    def make_build_dir() -> str:  # once every mode has traced
        nonlocal build_dir
        if build_dir is None:
            build_dir = storage.new_build_dir(dest, plan.timestamped)
        return build_dir

    try:
        # Each clone is traced, written and freed before the next (see staged).
        trace_seconds, _ = build_staged(model, plan, make_build_dir, custom_objects, lap)
        build_dir = make_build_dir()
        lap.seconds.update({f"trace:{mode}": t for mode, t in trace_seconds.items()})
        if golden is not None:
            write_golden(build_dir, golden)
            del golden
        if warmup:
            write_warmup(build_dir, plan.inputs)
        lap("golden_write")
        diff = pipeline.gate_signatures(build_dir, plan, compare_label, allow_breaking_signature)
        lap("signature_gate")

        def verify_step():
            if not verify:
                return None
            parity = pipeline.verify_build(
                build_dir, model, plan, sample_inputs, verify == FULL, custom_objects
            )
            lap("verify_reload")
            if parity.training:  # part of verify_reload's seconds
                lap.seconds["verify:training"] = parity.training["seconds"]
            return parity

        with ThreadPoolExecutor(1, thread_name_prefix="stage") as pool:
            upload = pool.submit(pipeline.stage_build, build_dir, plan, source, None, build_id)
            draft, staging, parity = pipeline.stage_while_verifying(upload, verify_step, plan)
        lap("stage")  # what the upload took beyond verification (they overlap)
        lineage = collect_lineage(source, metadata, diff.version if diff else None)
        outcome = pipeline.publish_version(
            build_dir,
            staging,
            plan,
            draft,
            parity,
            keep_versions,
            build_id,
            lineage=lineage,
        )
        for warning in outcome.warnings:
            log.warning("%s", warning)
        lap("publish")
    finally:
        if build_dir is not None:
            storage.cleanup(build_dir, dest, staging)
    published = outcome.published
    return ExportResult(
        published.path, published.version, plan.modes, parity, lap.seconds, outcome.warnings
    )
