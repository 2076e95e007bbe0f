"""The export pipeline as a Prefect flow.

validate → clone-per-mode → trace → write-checkpoint → write-proto → verify-reload
→ publish, one task each. Parameters are JSON-friendly so a deployment can call it.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger

from export_core import sources, storage
from tasks import steps


@flow(name="export-keras-model", validate_parameters=False, log_prints=True)
def export_keras_model(
    model: Any,
    destination: str,
    serving_only: bool = False,
    as_text: bool = False,
    input_signature: list[dict] | None = None,
    custom_objects: list[str] | None = None,
    storage_options: dict | None = None,
    sample_inputs: str | None = None,
    timestamped: bool = True,
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
        sample_inputs: URI of an ``.npz`` of golden inputs for verify-reload.
        timestamped: Create an integer version folder under ``destination``.

    Returns:
        ``path``, ``version``, ``modes``, ``parity`` and ``seconds`` per step.
    """
    logger = get_run_logger()
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(step: str) -> None:
        now = time.perf_counter()
        seconds[step] = round(now - clock[0], 4)
        clock[0] = now

    objects = sources.resolve_custom_objects(custom_objects)
    keras_model = (
        sources.load_keras_source(model, objects, storage_options)
        if isinstance(model, str)
        else model
    )
    samples = sources.load_sample_inputs(sample_inputs, storage_options)
    lap("load")
    plan = steps.validate(
        keras_model,
        destination,
        custom_objects=objects,
        input_signature=sources.signature_from_json(input_signature),
        serving_only=serving_only,
        as_text=as_text,
        timestamped=timestamped,
        storage_options=storage_options,
    )
    lap("validate")
    clones = steps.clone(keras_model, plan, objects)
    lap("clone")
    traced = steps.trace(clones, plan)
    lap("trace")
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    build_dir = storage.new_build_dir(dest, plan.timestamped)
    try:
        steps.checkpoint(traced, build_dir)
        lap("write_checkpoint")
        steps.proto(traced, plan, build_dir)
        lap("write_proto")
        parity = steps.verify(build_dir, keras_model, plan, samples)
        lap("verify_reload")
        published = steps.publish(build_dir, plan)
        lap("publish")
    finally:
        storage.remove_build_dir(build_dir)
    logger.info("Published %s (modes %s)", published.path, ", ".join(plan.modes))
    return {
        "path": published.path,
        "version": published.version,
        "modes": list(plan.modes),
        "parity": parity.to_dict(),
        "seconds": seconds,
    }
