"""The export as a Prefect flow: the steps of ``export_core.sequence``, each a task.

``export-keras-model`` loads the model (task ``load-source``), runs the core's one
sequence of steps through ``keras_export.tasks.steps.PrefectRunner`` (a task per
step), then announces the version (the UI artifact and the events). Parameters are
JSON-friendly so a deployment can call it.
"""

from __future__ import annotations

from typing import Any

import keras
from prefect import Flow, get_run_logger

from export_core.artifacts.lineage import check_metadata
from export_core.model import source_file
from export_core.preflight import check_keep
from export_core.request import ExportRequest, ExportResult
from export_core.sequence import run_steps
from export_core.steps.verify import FULL
from keras_export.credentials import (
    SECRET_WARNING,
    record_parameters,
    secret_keys,
    storage_access,
)
from keras_export.signing_key import signing_key_source
from keras_export.tasks import steps
from keras_export.tasks.announce import announce, record_asset


class ModelParameterFlow(Flow):
    """Records parameters as Prefect may keep them: models and blocks by name, no secrets.

    Prefect stores a flow run's parameters as JSON, verbatim, where the UI and API
    show them. A ``keras.Model`` is recorded by name (its encoder would walk every
    attribute of the model, about 0.2 s for a small MLP, before giving up); a
    credentials block by its saved name; secret-looking ``storage_options`` values
    redacted (the flow still uses the real ones, see ``keras_export.credentials``).
    """

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        parameters = record_parameters(parameters)
        models = {k: v for k, v in parameters.items() if isinstance(v, keras.Model)}
        rest = {k: v for k, v in parameters.items() if k not in models}
        serialized = super().serialize_parameters(rest)
        serialized.update({k: f"<keras.Model {m.name!r}>" for k, m in models.items()})
        return serialized


def model_flow(**options: Any):
    """``@flow`` whose runs record parameters without models or secrets."""
    return lambda fn: ModelParameterFlow(fn=fn, **options)


@model_flow(name="export-keras-model", validate_parameters=False)
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
    signing_key: Any = None,
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
            the serving one (see ``export_core.steps.verify``).
        modes: The MetaGraphs to write, e.g. ``["serve", "eval"]`` (default: all
            three for a compiled model).
        credentials: A Prefect block (or a saved one's name such as
            ``"aws-credentials/registry-writer"``) for the destination; see
            ``keras_export.credentials``. None: ambient credentials.
        source_credentials: The same for the model source and ``sample_inputs``
            (default: ``credentials``).
        metadata: A JSON object recorded in the manifest's lineage (metrics, dataset).
        compare_label: The label whose version the serving signatures must stay
            compatible with (default: the newest version); see ``signature_gate``.
        allow_breaking_signature: Publish even when the signatures break clients.
        warmup: Write TF Serving's ``assets.extra/tf_serving_warmup_requests``.
        cast_inputs: Accept an ``input_signature`` whose dtypes differ from the
            model's; the graphs cast them (recorded in the manifest).
        signing_key: Sign the version: a Prefect ``Secret`` block's name holding an
            Ed25519 private key's PEM (``"secret/model-signing-key"``) or a key file's
            path; see ``keras_export.signing_key``. Checked before any work.

    Returns:
        ``published`` (True), ``path``, ``version``, ``modes``, ``tags``,
        ``signatures``, ``files``, ``parity``, ``pruned``, ``seconds`` per step, and
        ``warnings``: what failed after the version became visible (retention, the
        artifact, the event), which does not fail the run.
    """
    logger = get_run_logger()
    keep_versions = check_keep(keep_versions)
    metadata = check_metadata(metadata)
    objects = source_file.resolve_custom_objects(custom_objects)
    access = storage_access(credentials, storage_options)
    source_access = (
        storage_access(source_credentials, storage_options) if source_credentials else access
    )
    warn_about_secrets(logger, storage_options)
    signer = signing_key_source(signing_key)  # a bad key fails here, before any work
    uri = model if isinstance(model, str) else None
    loaded, source, samples = steps.load_source(uri, objects, source_access, sample_inputs)
    if uri is None:
        loaded, source = model, {"uri": None, "sha256": None, "name": model.name}
    request = ExportRequest(
        model=loaded,
        destination=destination,
        storage=access.storage_options,  # a block is loaded by each step that needs it
        custom_objects=objects,
        as_text=as_text,
        input_signature=source_file.signature_from_json(input_signature),
        modes=modes,
        serving_only=serving_only,
        timestamped=timestamped,
        sample_inputs=samples,
        verify=FULL if full_verify else True,
        keep_versions=keep_versions,
        source=source,
        build_id=build_id(),
        metadata=metadata,
        compare_label=compare_label,
        allow_breaking_signature=allow_breaking_signature,
        warmup=warmup,
        cast_inputs=cast_inputs,
        run_lineage=prefect_lineage(),
        signing_key=signer,
    )
    exported = run_steps(request, steps.PrefectRunner(access))
    logger.info("Published %s (modes %s)", exported.path, ", ".join(exported.modes))
    result = result_dict(exported)
    result["warnings"] += announce(result, source, destination)
    result["warnings"] += record_published_asset(result, source, destination, logger)
    return result


def record_published_asset(result: dict, source: dict, base: str, logger: Any) -> list[str]:
    """The asset materialization (``tasks.announce.record_asset``); as for the artifact,
    a failure here is a warning, never a failed export of a version already visible."""
    try:
        return record_asset(result, source, base)
    except Exception as exc:  # noqa: BLE001 - the version is published either way
        warning = f"Version {result['version']} is published, but its asset record failed: {exc}"
        logger.warning("%s", warning)
        return [warning]


def result_dict(exported: ExportResult) -> dict:
    """The flow's JSON result: the version, what it holds, and how the export went."""
    manifest = exported.manifest
    return {
        "published": True,
        "path": exported.path,
        "version": exported.version,
        "modes": list(exported.modes),
        "tags": [m["tags"] for m in manifest.meta_graphs],
        "signatures": {k: sig for m in manifest.meta_graphs for k, sig in m["signatures"].items()},
        "files": {k: dict(v) for k, v in manifest.files.items()},
        "parity": exported.parity.to_dict() if exported.parity else None,
        "pruned": list(exported.pruned),
        "seconds": dict(exported.seconds),
        "warnings": list(exported.warnings),
        "signature_check": exported.signature_check,
        "lineage": exported.lineage,
    }


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
