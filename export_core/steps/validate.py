"""Step 1, validate: check everything cheap before any expensive work or any write."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from export_core import constants as c
from export_core import storage
from export_core.errors import (
    CustomObjectError,
    ExportValidationError,
    UnsupportedModelError,
)
from export_core.model.input_checks import check_compatible, check_samples
from export_core.model.signature import InputSignature, infer_input_signature, model_input_signature
from export_core.model.training_setup import check_training_setup
from export_core.preflight import check_destination, check_modes
from export_core.registry import signature_gate

log = logging.getLogger(__name__)

SEQUENTIAL, FUNCTIONAL, SUBCLASSED = "sequential", "functional", "subclassed"


@dataclass(frozen=True)
class ExportPlan:
    """What validation decided: the modes to export and the serving inputs.

    Attributes:
        modes: ``("serve",)`` or ``("serve", "train", "eval")``.
        inputs: The serving inputs, named.
        model_kind: ``"sequential"``, ``"functional"`` or ``"subclassed"``.
        model_json: ``model.to_json()``, or None when the model has no config.
        destination: The base path or URI the caller gave.
        timestamped: Whether a version folder is created under ``destination``.
        as_text: Whether the proto is written as ``saved_model.pbtxt``.
        storage_options: Options for the fsspec filesystem of ``destination``.
        cloneable: Whether the model can be rebuilt from its config; when not (a
            serving-only export), the serving graph is traced from the model itself.
    """

    modes: tuple[str, ...]
    inputs: InputSignature
    model_kind: str
    model_json: str | None
    destination: str
    timestamped: bool = True
    as_text: bool = False
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    cloneable: bool = True


def validate_export(
    model: Any,
    saved_model_path: Any,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    input_signature: Any = None,
    serving_only: bool = False,
    as_text: bool = False,
    timestamped: bool = True,
    storage_options: Mapping[str, Any] | None = None,
    modes: Sequence[str] | None = None,
    sample_inputs: Any = None,
    compare_label: str | None = None,
    cast_inputs: bool = False,
) -> ExportPlan:
    """Validates an export request and decides what to export.

    Nothing is written. The one change made to ``model`` is the one the original
    API made: an unbuilt model given an ``input_signature`` is built from it.

    Returns:
        The ``ExportPlan`` that later steps follow.

    Raises:
        ExportValidationError: The model, path, options or signature are invalid.
        UnsupportedModelError: A subclassed model without ``get_config`` was asked
            for train/eval graphs.
        VersionExistsError: ``timestamped=False`` and the folder is not empty.
    """
    requested = requested_modes(modes, serving_only)
    kind = check_model(model, requested == (c.SERVE,))
    check_custom_objects(custom_objects)
    destination = _check_destination(saved_model_path, storage_options, timestamped)
    if compare_label is not None:
        signature_gate.require_label(destination.uri, compare_label, storage_options)
    inputs = _serving_inputs(model, input_signature, cast_inputs)
    if sample_inputs is not None:
        check_samples(inputs, sample_inputs)
    check_finite_weights(model)
    modes = _plan_modes(model, requested)
    if modes != (c.SERVE,):
        check_training_setup(model)
    model_json = model_config_json(model)
    cloneable = model_json is not None and (kind != SUBCLASSED or overrides_get_config(model))
    if not cloneable and modes != (c.SERVE,):
        raise UnsupportedModelError(
            f"Model '{model.name}' cannot produce a config (get_config() failed), so it "
            "cannot be cloned to trace the train and eval graphs. Fix get_config() or "
            "pass serving_only=True."
        )
    return ExportPlan(
        modes=modes,
        inputs=inputs,
        model_kind=kind,
        model_json=model_json,
        destination=destination.uri,
        timestamped=timestamped,
        as_text=as_text,
        storage_options=dict(storage_options or {}),
        cloneable=cloneable,
    )


def _check_destination(
    uri: Any, storage_options: Mapping[str, Any] | None, timestamped: bool
) -> storage.Destination:
    """The destination, usable: writable, reachable, empty when written into directly."""
    check_destination(uri, timestamped)
    destination = storage.Destination.parse(uri, storage_options)
    destination.check_reachable()
    if not timestamped:
        destination.require_empty()
    return destination


def _serving_inputs(model: Any, input_signature: Any, cast_inputs: bool) -> InputSignature:
    """The serving inputs: the model's own, or an override that fits them (an unbuilt
    model is built from it, as the original API did)."""
    own = model_input_signature(model) if input_signature is not None else None
    if input_signature is not None and not model.built:
        _build_from_signature(model, input_signature)
    inputs = infer_input_signature(model, input_signature)
    if own is not None:
        inputs = check_compatible(inputs, own, "input_signature", cast_inputs)
    return inputs


def requested_modes(modes: Sequence[str] | None, serving_only: bool) -> tuple[str, ...] | None:
    """See ``preflight.check_modes`` (the same rule for the API, the flows and the CLI)."""
    return check_modes(modes, serving_only)


def _plan_modes(model: keras.Model, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    trainable = is_trainable_compiled(model)
    if requested is None:
        return c.MODES if trainable else (c.SERVE,)
    if requested != (c.SERVE,) and not trainable:
        raise ExportValidationError(
            f"modes {list(requested)} include training or evaluation, but model "
            f"'{model.name}' is not compiled with an optimizer and a loss. Compile it "
            "(model.compile(optimizer, loss)) or pass modes=('serve',)."
        )
    return requested


def check_model(model: Any, serving_only: bool) -> str:
    """Returns the model's kind; raises for non-models and unclonable subclasses."""
    if not isinstance(model, keras.Model):
        raise ExportValidationError(
            f"Expected a keras.Model, received {type(model).__name__!s}. Load a saved "
            "model first, e.g. keras.saving.load_model('model.keras')."
        )
    kind = model_kind(model)
    if kind == SUBCLASSED and not serving_only and not overrides_get_config(model):
        raise UnsupportedModelError(
            f"Model '{model.name}' is a subclassed model ({type(model).__name__}) whose "
            "class does not override get_config(), so it cannot be cloned to trace the "
            "train and eval graphs. Pass serving_only=True to export the serving graph "
            "only, or implement get_config() (and from_config() if needed)."
        )
    return kind


def model_kind(model: keras.Model) -> str:
    if isinstance(model, keras.Sequential):
        return SEQUENTIAL
    # Functional is not public in Keras 3; a functional model (even one of a
    # keras.Model subclass built with inputs/outputs) carries its graph's nodes.
    if hasattr(model, "_inputs_struct") and hasattr(model, "_operations"):
        return FUNCTIONAL
    return SUBCLASSED


def overrides_get_config(model: keras.Model) -> bool:
    """True when a user class between ``type(model)`` and Keras defines get_config."""
    for cls in type(model).__mro__:
        if cls.__module__.split(".")[0] == "keras":
            return False
        if "get_config" in vars(cls):
            return True
    return False


def check_custom_objects(custom_objects: Any) -> None:
    if custom_objects is None:
        return
    if not isinstance(custom_objects, Mapping):
        raise CustomObjectError(
            "custom_objects must be a dict mapping names to classes or functions, e.g. "
            f"custom_objects={{'relu6': relu6}}; received {type(custom_objects).__name__}."
        )
    for name, obj in custom_objects.items():
        if not isinstance(name, str) or not callable(obj):
            raise CustomObjectError(
                f"custom_objects entry {name!r}: {obj!r} is not a class or function. "
                "Map each name used in the model's config to the class or function "
                "itself, e.g. {'MyLayer': MyLayer}."
            )


def is_trainable_compiled(model: keras.Model) -> bool:
    """Train/eval graphs need an optimizer and a loss, as in the original API."""
    return bool(
        getattr(model, "compiled", False)
        and getattr(model, "optimizer", None) is not None
        and getattr(model, "loss", None) is not None
    )


def check_finite_weights(model: keras.Model) -> None:
    for variable in model.weights:
        # A view of the tensor's buffer on CPU (``.numpy()`` would copy the weight).
        value = np.asarray(tf.convert_to_tensor(variable.value))
        if value.dtype.kind != "f" or value.size == 0:
            continue
        # min/max propagate NaN and expose inf without a temporary the weight's size.
        if np.isfinite(value.min()) and np.isfinite(value.max()):
            continue
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise ExportValidationError(
            f"Weight '{variable.path}' holds {bad} non-finite value(s) (NaN or inf); "
            "a SavedModel of it would serve garbage. Fix the training run (lower the "
            "learning rate, clip gradients) or restore a finite checkpoint first."
        )


def model_config_json(model: keras.Model) -> str | None:
    try:
        return model.to_json()
    except Exception as exc:  # noqa: BLE001 - any config failure means "no config"
        log.warning(
            "Model '%s' cannot produce a JSON config (%s); assets/saved_model.json is "
            "skipped and load_from_saved_model() will not be able to rebuild it.",
            model.name,
            exc,
        )
        return None


def _build_from_signature(model: keras.Model, input_signature: Any) -> None:
    signature = infer_input_signature(model, input_signature)
    try:
        model(signature.zeros())
    except Exception as exc:
        raise ExportValidationError(
            f"Model '{model.name}' could not be built from input_signature "
            f"{[t.to_dict() for t in signature.tensors]}: {exc}. Check the shapes and "
            "dtypes against what the model's first layer expects."
        ) from exc


__all__ = ["ExportPlan", "validate_export", "InputSignature"]
