"""Reloading a Keras model from an exported SavedModel (config + checkpoint)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from export_core import constants as c
from export_core import storage
from export_core.errors import (
    CustomObjectError,
    ExportValidationError,
    missing_custom_object_message,
)


def load_from_saved_model(
    saved_model_path: Any,
    custom_objects: Mapping[str, Any] | None = None,
    *,
    compile: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    safe_mode: bool = True,
) -> keras.Model:
    """Rebuilds a Keras model from ``assets/saved_model.json`` and the checkpoint.

    Args:
        saved_model_path: The SavedModel folder (a version folder), local or URI.
        custom_objects: Classes/functions the config refers to.
        compile: Also restore the compile configuration and the optimizer's state
            (iteration count, slots), so training resumes where it stopped.
        storage_options: Options for the fsspec filesystem.
        safe_mode: Refuse configs that would run arbitrary code (Lambda layers).
            Pass False only for SavedModels you trust.

    Returns:
        The model, with the exported weights.

    Raises:
        ExportValidationError: The folder holds no model config, or it cannot be
            deserialized (e.g. a custom object is missing).
        StorageError: The folder cannot be read.
    """
    with storage.local_copy(saved_model_path, storage_options) as local:
        config = _read_config(local)
        if not compile:
            config.pop("compile_config", None)
        try:
            model = keras.saving.deserialize_keras_object(
                config, custom_objects=dict(custom_objects or {}), safe_mode=safe_mode
            )
        except (TypeError, ValueError) as exc:
            raise CustomObjectError(
                missing_custom_object_message(f"The model in {saved_model_path}", exc)
            ) from exc
        if not model.built:
            _build_from_serving_signature(model, local)
        _restore(model, os.path.join(local, c.VARIABLES_PREFIX), compile)
    return model


def _read_config(folder: str) -> dict:
    path = os.path.join(folder, c.MODEL_JSON)
    if not os.path.exists(path):
        raise ExportValidationError(
            f"{folder} has no {c.MODEL_JSON}: it was not exported from a model with a "
            "config, so it cannot be rebuilt as a Keras model. Load it with "
            "tf.saved_model.load() or keras.layers.TFSMLayer instead."
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _build_from_serving_signature(model: keras.Model, folder: str) -> None:
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(folder, c.SAVED_MODEL_PB), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if c.SERVE in meta_graph.meta_info_def.tags:
            inputs = meta_graph.signature_def[c.SIGNATURE_KEYS[c.SERVE]].inputs
            zeros = [
                tf.zeros([max(d.size, 1) for d in info.tensor_shape.dim], info.dtype)
                for _, info in sorted(inputs.items())
            ]
            model(zeros[0] if len(zeros) == 1 else zeros)
            return


def _restore(model: keras.Model, prefix: str, compile: bool) -> None:
    groups = {c.MODEL_VARIABLES: [v.value for v in model.variables]}
    if compile and getattr(model, "optimizer", None) is not None:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        groups[c.OPTIMIZER_VARIABLES] = [v.value for v in model.optimizer.variables]
    status = tf.train.Checkpoint(**groups).read(prefix)
    status.expect_partial()
    status.assert_existing_objects_matched()
