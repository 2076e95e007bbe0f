"""The export pipeline as Prefect flows.

validate → clone-per-mode → trace → write-checkpoint → write-proto → (stage) →
verify-reload → publish, one task each. Parameters are JSON-friendly so a
deployment can call the flows.
"""

from __future__ import annotations

from typing import Any

import keras
from prefect import Flow, get_run_logger

from export_core import pipeline, sources, storage
from export_core.export import StepClock
from export_core.heap import export_scope, release_gradients
from export_core.lineage import check_metadata, collect_lineage
from export_core.preflight import check_keep
from export_core.staged import release_clones
from keras_export.flows.announce import _size, announce
from keras_export.tasks import steps
from keras_export.tasks.credentials import (
    SECRET_WARNING,
    record_parameters,
    secret_keys,
    storage_access,
)


class _ModelParameterFlow(Flow):
    """Records parameters as Prefect may keep them: models and blocks by name, no secrets.

    Prefect stores a flow run's parameters as JSON, verbatim, where the UI and API
    show them. A ``keras.Model`` is recorded by name (its encoder would walk every
    attribute of the model, about 0.2 s for a small MLP, before giving up); a
    credentials block by its saved name; secret-looking ``storage_options`` values
    redacted (the flow still uses the real ones, see ``tasks.credentials``).
    """

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        parameters = record_parameters(parameters)
        models = {k: v for k, v in parameters.items() if isinstance(v, keras.Model)}
        rest = {k: v for k, v in parameters.items() if k not in models}
        serialized = super().serialize_parameters(rest)
        serialized.update({k: f"<keras.Model {m.name!r}>" for k, m in models.items()})
        return serialized


def _model_flow(**options: Any):
    """``@flow`` whose runs record parameters without models or secrets."""
    return lambda fn: _ModelParameterFlow(fn=fn, **options)


@_model_flow(name="export-keras-model", validate_parameters=False)
@export_scope()  # bounds the process-wide effects (export_core.heap)
def export_keras_model(
    model: Any,
    destination: str,
    serving_only: bool = False,
    as_text: bool = False,
    input_signature: list[dict] | None = None,
    custom_objects: list[str] | None = None,
    storage_options: dict | None = None,
    keep_versions: int | None = None,
    sample_inputs: str | None = None,
    timestamped: bool = True,
    full_verify: bool = False,
    modes: list[str] | None = None,
    credentials: Any = None,
    source_credentials: Any = None,
    metadata: dict | None = None,
    compare_label: str | None = None,
    allow_breaking_signature: bool = False,
    warmup: bool = False,
    cast_inputs: bool = False,
) -> dict:
    """Exports a Keras model as a verified SavedModel version under ``destination``.

    Args:
        model: URI of a ``.keras`` file (in-process callers may pass a keras.Model).
        destination: Base path or URI (``file://``, ``s3://``, ``gs://``...).
        serving_only: Export only the ``serve`` MetaGraph.
        as_text: Write ``saved_model.pbtxt``.
        input_signature: ``[{"shape": [null, 3], "dtype": "float32", "name": "x"}]``.
        custom_objects: Import paths like ``"pkg.module:NAME"``.
        storage_options: fsspec options for the destination (and remote sources).
        keep_versions: After publishing, keep only this many newest complete versions.
        sample_inputs: URI of an ``.npz`` of golden inputs for verify-reload.
        timestamped: Create an integer version folder under ``destination``.
        full_verify: Load every MetaGraph with both TensorFlow loaders, not only
            the serving one (see ``export_core.verify``).
        modes: The MetaGraphs to write, e.g. ``["serve", "eval"]`` (default: all
            three for a compiled model).
        credentials: A Prefect block (or a saved one's name such as
            ``"aws-credentials/registry-writer"``) for the destination; see
            ``keras_export.tasks.credentials``. None: ambient credentials.
        source_credentials: The same for the model source and ``sample_inputs``
            (default: ``credentials``).
        metadata: A JSON object recorded in the manifest's lineage (metrics, dataset).
        compare_label: The label whose version the serving signatures must stay
            compatible with (default: the newest version); see ``signature_gate``.
        allow_breaking_signature: Publish even when the signatures break clients.
        warmup: Write TF Serving's ``assets.extra/tf_serving_warmup_requests``.
        cast_inputs: Accept an ``input_signature`` whose dtypes differ from the
            model's; the graphs cast them (recorded in the manifest).

    Returns:
        ``published`` (True), ``path``, ``version``, ``modes``, ``tags``,
        ``signatures``, ``files``, ``parity``, ``pruned``, ``seconds`` per step, and
        ``warnings``: what failed after the version became visible (retention, the
        artifact, the event), which does not fail the run.
    """
    logger = get_run_logger()
    lap = StepClock()
    keep_versions = check_keep(keep_versions)
    metadata = check_metadata(metadata)
    objects = sources.resolve_custom_objects(custom_objects)
    access = storage_access(credentials, storage_options)
    source_access = (
        storage_access(source_credentials, storage_options) if source_credentials else access
    )
    warn_about_secrets(logger, storage_options)
    uri = model if isinstance(model, str) else None
    loaded, source, samples = steps.load_source(uri, objects, source_access, sample_inputs)
    keras_model = loaded if uri else model
    if uri is None:
        source = {"uri": None, "sha256": None, "name": model.name}
    lap("load")
    plan = steps.validate(
        keras_model,
        destination,
        access,
        custom_objects=objects,
        input_signature=sources.signature_from_json(input_signature),
        serving_only=serving_only,
        as_text=as_text,
        timestamped=timestamped,
        modes=modes,
        sample_inputs=samples,
        compare_label=compare_label,
        cast_inputs=cast_inputs,
    )
    lap("validate")
    clones = steps.clone(keras_model, plan, objects)
    lap("clone")
    traced = steps.trace(clones, plan)
    lap("trace")
    # Parsing the destination reads no credentials and touches no network.
    build_dir = storage.new_build_dir(storage.Destination.parse(plan.destination), plan.timestamped)
    staging = None
    try:
        steps.checkpoint(traced, build_dir)
        lap("write_checkpoint")
        steps.proto(traced, plan, build_dir, keras_model, samples, warmup)
        lap("write_proto")
        diff = steps.gate(build_dir, plan, access, compare_label, allow_breaking_signature)
        lap("signature_gate")
        clone_bytes = clones.nbytes()
        del clones, traced  # a weight copy per mode, graphs: freed before verify
        release_gradients()  # what still held the traced train graph (export_core.heap)
        release_clones(clone_bytes)
        lap("release_clones")
        # The upload runs on the task runner while this thread verifies the build.
        upload = steps.stage.submit(build_dir, plan, source, access, build_id())

        def verify_step():
            parity = steps.verify(build_dir, keras_model, plan, samples, full_verify, objects)
            lap("verify_reload")
            if parity.training:  # part of verify_reload's seconds
                lap.seconds["verify:training"] = parity.training["seconds"]
            return parity

        def discard_staged(staged: storage.Staged) -> None:
            steps.discard(None, plan, access, staged)

        draft, staging, parity = pipeline.stage_while_verifying(
            upload, verify_step, plan, discard_staged
        )
        logger.info("Staged %d files (%d bytes)", len(draft.files), _size(draft))
        lap("stage")
        parent = diff["version"] if diff else None
        lineage = collect_lineage(source, metadata, parent, prefect_lineage())
        outcome = steps.publish(
            build_dir, staging, plan, draft, parity, keep_versions, access, build_id(), lineage
        )
        lap("publish")
    finally:
        # A plain call, not a task: it must run even while the run is interrupted.
        steps.discard.fn(build_dir, plan, access, staging)
    published = outcome.published
    logger.info("Published %s (modes %s)", published.path, ", ".join(plan.modes))
    result = {
        "published": True,
        "path": published.path,
        "version": published.version,
        "modes": list(plan.modes),
        "tags": [m["tags"] for m in draft.meta_graphs],
        "signatures": {key: sig for m in draft.meta_graphs for key, sig in m["signatures"].items()},
        "files": {k: dict(v) for k, v in draft.files.items()},
        "parity": parity.to_dict(),
        "pruned": outcome.pruned,
        "seconds": lap.seconds,
        "warnings": list(outcome.warnings),
        "signature_check": diff,
        "lineage": lineage,
    }
    announce(result, source, logger)
    return result


def prefect_lineage() -> dict:
    """The flow run (and its deployment, when run from one) for the manifest's lineage."""
    from prefect.runtime import deployment, flow_run

    return {
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "deployment_name": deployment.name,
        "deployment_id": str(deployment.id) if deployment.id else None,
    }


def build_id() -> str:
    """This export's id: the flow run's, so every retry of the run (and of its publish
    task) is the same build; a new run is a new build."""
    from prefect.runtime import flow_run

    return f"flow-run-{flow_run.id}"


def warn_about_secrets(logger: Any, storage_options: Any) -> None:
    """One warning when explicit storage_options carry secrets (they belong in a block)."""
    found = secret_keys(storage_options or {})
    if found:
        logger.warning(SECRET_WARNING, ", ".join(found))
