"""The Python API: the original ``export_saved_model``, and ``run_export`` with every option.

Both run the steps of ``export_core.sequence`` in this process (the Prefect flow runs
the same steps, each as a task).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from export_core.artifacts.lineage import check_metadata
from export_core.artifacts.signing import load_private_key
from export_core.errors import ExportValidationError
from export_core.preflight import check_keep
from export_core.request import ExportRequest, ExportResult
from export_core.sequence import run_steps
from export_core.steps.verify import FULL

__all__ = ["ExportResult", "export_saved_model", "run_export"]


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
    signing_key: Any = None,
) -> ExportResult:
    """``export_saved_model`` returning the full ``ExportResult``.

    Runs the steps of ``export_core.sequence`` in this process, as the Prefect flow
    runs them as tasks. ``sample_inputs`` (dict by input name, list, or one array) are
    the golden inputs verify-reload compares on; ``verify=False`` skips that step and
    ``verify="full"`` loads every MetaGraph with both loaders and always checks train
    and eval against Keras (see ``steps.verify``, ``steps.training_check``).
    ``keep_versions`` prunes the oldest complete versions beyond that many after a
    successful publish; ``source`` (e.g. ``{"uri": ..., "sha256": ...}``) goes into
    the manifest, and so does ``build_id`` (default: a new random id), which names
    this export in its claim and manifest. ``metadata`` (a JSON-able dict: training
    metrics, dataset version...) goes into the manifest's lineage. Before publishing,
    the serving signatures are compared with the version holding ``compare_label``
    (default: the newest); breaking changes fail the export unless
    ``allow_breaking_signature`` (see ``registry.signature_gate``). ``warmup`` writes
    ``assets.extra/tf_serving_warmup_requests`` from the golden inputs.
    ``cast_inputs`` accepts an ``input_signature`` whose dtypes differ from the model's
    inputs: the graphs cast them (the manifest records ``input_casts``); without it such
    a signature is refused, since it changes what clients must send.
    ``signing_key`` (an Ed25519 private key: a PEM file's path, PEM text or a
    ``cryptography`` key object) signs the manifest for the published version's number
    (``export_manifest.sig``, see ``artifacts.signing``); it is checked before any work.
    """
    # Every keyword above is a field of ExportRequest, by the same name.
    options = {k: v for k, v in locals().items() if k not in ("model", "saved_model_path")}
    if verify not in (True, False, FULL):
        raise ExportValidationError(f"verify must be True, False or {FULL!r}, received {verify!r}.")
    storage_options = dict(options.pop("storage_options") or {})
    options.update(keep_versions=check_keep(keep_versions), metadata=check_metadata(metadata))
    if signing_key is not None:  # a bad key fails here, before anything is built
        key = load_private_key(signing_key)
        options["signing_key"] = lambda: key
    request = ExportRequest(
        model=model, destination=saved_model_path, storage=lambda: storage_options, **options
    )
    return run_steps(request)
