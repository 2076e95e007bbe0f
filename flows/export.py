"""The export pipeline as Prefect flows.

validate → clone-per-mode → trace → write-checkpoint → write-proto → (stage) →
verify-reload → publish, one task each. Parameters are JSON-friendly so a
deployment can call the flows.
"""

from __future__ import annotations

from typing import Any

import keras
from prefect import Flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.task_runners import ThreadPoolTaskRunner

from export_core import pipeline, run_export, sources, storage
from export_core.export import StepClock, release_clones
from export_core.preflight import check_keep
from keras_export.tasks import steps
from keras_export.tasks.credentials import (
    SECRET_WARNING,
    StorageAccess,
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

    Returns:
        ``published`` (True), ``path``, ``version``, ``modes``, ``tags``,
        ``signatures``, ``files``, ``parity``, ``pruned``, ``seconds`` per step, and
        ``warnings``: what failed after the version became visible (retention, the
        artifact, the event), which does not fail the run.
    """
    logger = get_run_logger()
    lap = StepClock()
    keep_versions = check_keep(keep_versions)
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
        steps.proto(traced, plan, build_dir, keras_model, samples)
        lap("write_proto")
        clone_bytes = clones.nbytes()
        del clones, traced  # a weight copy per mode, graphs: freed before verify
        release_clones(clone_bytes)
        lap("release_clones")
        # The upload runs on the task runner while this thread verifies the build.
        upload = steps.stage.submit(build_dir, plan, source, access)

        def verify_step():
            parity = steps.verify(build_dir, keras_model, plan, samples, full_verify)
            lap("verify_reload")
            return parity

        def discard_staged(prefix: str) -> None:
            steps.discard(None, plan, access, prefix)

        draft, staging, parity = pipeline.stage_while_verifying(
            upload, verify_step, plan, discard_staged
        )
        logger.info("Staged %d files (%d bytes)", len(draft.files), _size(draft))
        lap("stage")
        outcome = steps.publish(
            build_dir, staging, plan, draft, parity, keep_versions, access, build_id()
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
    }
    announce(result, source, logger)
    return result


def build_id() -> str:
    """This export's id: the flow run's, so every retry of the run (and of its publish
    task) is the same build; a new run is a new build."""
    from prefect.runtime import flow_run

    return f"flow-run-{flow_run.id}"


def announce(result: dict, source: dict, logger: Any) -> None:
    """The artifact and the event. The version is already visible: a failure here is
    a warning in the result and the logs, not a failed (and retried) export."""
    steps_after = (
        ("artifact", lambda: create_markdown_artifact(
            key="keras-export", markdown=summary_markdown(result), description="SavedModel export"
        )),
        ("event", lambda: emit_published_event(result, source)),
    )  # fmt: skip
    for what, step in steps_after:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - any failure here must not fail the export
            warning = f"Version {result['version']} is published, but its {what} failed: {exc}"
            result["warnings"].append(warning)
            logger.warning("%s", warning)


def warn_about_secrets(logger: Any, storage_options: Any) -> None:
    """One warning when explicit storage_options carry secrets (they belong in a block)."""
    found = secret_keys(storage_options or {})
    if found:
        logger.warning(SECRET_WARNING, ", ".join(found))


PUBLISHED_EVENT = "model.version.published"


def emit_published_event(result: dict, source: dict) -> None:
    """Announces the new version so other deployments (roll-outs, alerts) can react."""
    name = model_name(source)
    emit_event(
        event=PUBLISHED_EVENT,
        resource={
            "prefect.resource.id": f"keras-export.model.{name}",
            "prefect.resource.name": name,
        },
        payload={
            "uri": result["path"],
            "version": result["version"],
            "model": name,
            "source_uri": source.get("uri"),
            "source_sha256": source.get("sha256"),
            "modes": result["modes"],
        },
    )


def model_name(source: dict) -> str:
    """The model's name: the source file's stem, else the Keras model's name."""
    uri = source.get("uri")
    if uri:
        return uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".keras")
    return source.get("name") or "model"


def _size(draft) -> int:
    return sum(int(info["size"]) for info in draft.files.values())


def summary_markdown(result: dict) -> str:
    """The artifact shown in the Prefect UI: version link, signatures, files, parity."""
    lines = [
        f"# Published [{result['path']}]({result['path']})",
        f"version `{result['version']}`, modes {', '.join(result['modes'])}",
        "",
        "| signature | inputs | outputs |",
        "|---|---|---|",
    ]
    for key, sig in result["signatures"].items():
        ins = ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in sig["inputs"])
        outs = ", ".join(t["name"] for t in sig["outputs"])
        lines.append(f"| `{key}` | {ins} | {outs} |")
    lines += ["", "| file | bytes |", "|---|---|"]
    lines += [f"| {name} | {info['size']} |" for name, info in result["files"].items()]
    parity = result["parity"]
    lines += [
        "",
        f"Parity: max |diff| {parity['max_abs_diff']:.3g} over {parity['samples']} samples, "
        f"loaders {', '.join(parity['loaders'])}.",
    ]
    return "\n".join(lines)


@task(name="export-one", cache_policy=NO_CACHE)
def export_one(spec: dict, access: StorageAccess, source_access: StorageAccess) -> dict:
    """One export of a batch, straight through ``export_core`` in this worker."""
    spec = dict(spec)
    objects = sources.resolve_custom_objects(spec.pop("custom_objects", None))
    options, source_options = access.storage_options(), source_access.storage_options()
    uri = spec.pop("model")
    model = sources.load_keras_source(uri, objects, source_options)
    from prefect.runtime import task_run

    result = run_export(
        model,
        spec.pop("destination"),
        build_id=f"task-run-{task_run.id}",
        custom_objects=objects,
        input_signature=sources.signature_from_json(spec.pop("input_signature", None)),
        sample_inputs=sources.load_sample_inputs(spec.pop("sample_inputs", None), source_options),
        source=sources.source_info(uri, source_options),
        storage_options=options,
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


@_model_flow(
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
