"""Step 3, trace: one ``tf.function`` per mode, each over its own clone.

Keras 3 layers cannot be rebuilt inside a TF1 ``tf.Graph`` the way the r1.13 exporter
did, so every mode is a traced concrete function:

* serve — ``model(x, training=False)``;
* train — ``model(x, training=True)`` under a ``GradientTape``, one optimizer step
  (which advances ``optimizer.iterations``, the graph's global step), loss and
  compiled metrics, exactly as ``Model.train_step`` does;
* eval — ``model(x, training=False)``, loss and compiled metrics, as ``test_step``.

Each mode's functions hang off a root object whose variables are grouped into the
lists named in ``constants`` (model, optimizer, metric variables), in the clone's
own order. Because the clones are structurally identical, the same variable has
the same checkpoint key in every mode, so a single checkpoint restores every
MetaGraph. The roots track the backing ``tf.Variable`` of each Keras variable:
those are what the functions capture, and what the TF1 session loader must find.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from export_core import constants as c
from export_core.errors import ExportValidationError, UnsupportedModelError
from export_core.model.custom_step import overridden_step, refuse_custom_step, run_custom_step
from export_core.model.shared_state import optimizer_state
from export_core.model.signature import TensorInfo, output_names
from export_core.model.targets import pack_targets, target_info
from export_core.steps.validate import ExportPlan
from export_core.tf_internals.tf_private import (
    captured_owner,
    clear_losses,
    has_checkpoint_state,
    iteration_counter,
    keras_compute_loss,
)


@dataclass(frozen=True)
class TracedMode:
    """A mode's signature function, and the root object that tracks its variables."""

    mode: str
    function: Any  # tf ConcreteFunction with named inputs and a dict of outputs
    root: Any  # AutoTrackable with the variable groups and the function
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    global_step: tf.Variable | None = None
    custom_step: str | None = None  # e.g. "MyModel.train_step" when the model's own


def trace_serve(model: keras.Model, plan: ExportPlan) -> TracedMode:
    names: list[str] = []

    def serve(*flat):
        outputs = model(plan.inputs.pack(list(flat)), training=False)
        names[:] = output_names(model, outputs)
        return dict(zip(names, tf.nest.flatten(outputs), strict=True))

    function = _concrete(serve, plan.inputs.tensor_specs(), c.SERVE)
    root = _root(model, c.SERVE, function)
    return TracedMode(c.SERVE, function, root, plan.inputs.tensors, _output_infos(function, names))


def trace_supervised(
    model: keras.Model, plan: ExportPlan, mode: str, predictions: tuple[TensorInfo, ...]
) -> TracedMode:
    """Traces the train or eval step of a compiled clone: its own, if it has one.

    Raises:
        UnsupportedModelError: The model overrides the mode's step (see
            ``custom_step``) and that method cannot be traced.
    """
    targets = tuple(target_info(model, i, p) for i, p in enumerate(predictions))
    n_inputs = len(plan.inputs.tensors)
    pred_names = [p.name for p in predictions]
    _build_metrics(model, plan, predictions, targets)
    custom = overridden_step(model, mode)
    order: list[str] = []

    def step(*flat):
        x = plan.inputs.pack(list(flat[:n_inputs]))
        y = pack_targets(model, pred_names, list(flat[n_inputs:]))
        if custom:
            out = run_custom_step(model, mode, x, y)
        else:
            out = _keras_step(model, mode == c.TRAIN, pred_names, x, y)
        order[:] = list(out)
        return out

    specs = plan.inputs.tensor_specs() + [t.to_tensor_spec() for t in targets]
    if custom:
        try:  # AutoGraph on, as Keras's own make_train_function traces it
            function = tf.function(step, input_signature=specs).get_concrete_function()
        except Exception as exc:
            raise refuse_custom_step(model, mode, custom, exc) from exc
    else:
        function = _concrete(step, specs, mode)
    root = _root(model, mode, function)
    return TracedMode(
        mode,
        function,
        root,
        plan.inputs.tensors + targets,
        _output_infos(function, order),
        global_step=iteration_counter(model.optimizer).value,
        custom_step=custom,
    )


def _keras_step(model: keras.Model, training: bool, pred_names: list[str], x: Any, y: Any):
    """Keras's own ``train_step`` (one optimizer step) or ``test_step``, run as is.

    The step is Keras's method itself, not a copy of it: loss scaling, the loss
    tracker, regularization losses, gradient accumulation and whatever a later
    Keras release adds stay exactly Keras's. The signature's outputs are read on
    the way: the loss ``_compute_loss`` returned (before any loss scaling), and the
    predictions and metric results ``compute_metrics`` received and returned.
    """
    seen: dict[str, Any] = {}
    cls = type(model)

    def compute_loss(*args: Any, **kwargs: Any):
        seen["loss"] = keras_compute_loss(model, *args, **kwargs)
        return seen["loss"]

    def compute_metrics(x: Any, y: Any, y_pred: Any, sample_weight: Any = None):
        seen["y_pred"] = y_pred
        seen["results"] = cls.compute_metrics(model, x, y, y_pred, sample_weight=sample_weight)
        return seen["results"]

    with instance_overrides(model, _compute_loss=compute_loss, compute_metrics=compute_metrics):
        (model.train_step if training else model.test_step)((x, y))
    out = {c.LOSS_KEY: seen["loss"]}
    for name, value in zip(pred_names, tf.nest.flatten(seen["y_pred"]), strict=True):
        out[f"predictions/{name}"] = value
    for name, value in seen["results"].items():
        if name != c.LOSS_KEY:  # the tracker's running mean; `loss` is this batch's
            out[f"metrics/{name}/value"] = value
            out[f"metrics/{name}/update_op"] = value
    return out


@contextlib.contextmanager
def instance_overrides(model: keras.Model, **methods: Any) -> Iterator[None]:
    """Methods set on one (cloned) model instance for as long as a trace runs.

    Set past Keras's attribute tracking: they are plain functions, not state.
    """
    for name, method in methods.items():
        object.__setattr__(model, name, method)
    try:
        yield
    finally:
        for name in methods:
            object.__delattr__(model, name)


def _concrete(fn, specs: list[tf.TensorSpec], mode: str):
    try:
        return tf.function(fn, input_signature=specs, autograph=False).get_concrete_function()
    except Exception as exc:
        raise ExportValidationError(
            f"Tracing the '{mode}' graph failed: {type(exc).__name__}: {exc}. Check "
            "input_signature against what the model expects, and that custom layers "
            "can run inside tf.function."
        ) from exc


def _root(model: keras.Model, mode: str, function: Any):
    """The object a mode's MetaGraph is saved from (see the module docstring).

    Besides the variable groups it tracks every other resource the traced
    function captures (lookup tables of StringLookup, IntegerLookup,
    TextVectorization...): TensorFlow's builder re-creates and initializes each
    in the exported graph (the ``__saved_model_init_op`` a TF1 loader runs) and
    copies the files they read (vocabularies) into ``assets/``.
    """
    root = tf.__internal__.tracking.AutoTrackable()
    setattr(root, c.MODEL_VARIABLES, [v.value for v in model.variables])
    if mode != c.SERVE:
        setattr(root, c.OPTIMIZER_VARIABLES, [v.value for v in optimizer_state(model)])
        setattr(root, c.METRIC_VARIABLES, [v.value for v in metric_variables(model)])
    tracked = {id(v) for group in vars(root).values() if isinstance(group, list) for v in group}
    resources = captured_resources(model, mode, function, tracked)
    if resources:
        setattr(root, c.RESOURCES, resources)
    return root


def captured_resources(model: keras.Model, mode: str, function: Any, tracked: set[int]):
    """The non-variable resources ``function`` captures, e.g. lookup tables.

    Raises:
        UnsupportedModelError: The function reads a variable that is not one of
            the model's (or its optimizer's, or its metrics') variables, or a
            resource whose state would need a checkpoint (a mutable hash table):
            neither could be restored by the exported graph.
    """
    found: dict[int, Any] = {}
    for tensor in function.captured_inputs:
        if tensor.dtype != tf.resource:
            continue
        owner = captured_owner(tensor)
        if owner is None or id(owner) in tracked or id(owner) in found:
            continue
        if isinstance(owner, tf.Variable) or has_checkpoint_state(owner):
            raise UnsupportedModelError(
                f"The '{mode}' graph of model '{model.name}' reads "
                f"{type(owner).__name__} '{getattr(owner, 'name', owner)}', which is "
                "held outside the model's weights and cannot be restored by the "
                "exported graph. Keep such state in Keras variables (self.add_weight), "
                "or finalize the layer (e.g. call adapt() so its lookup table is static)."
            )
        found[id(owner)] = owner
    return list(found.values())


def metric_variables(model: keras.Model) -> list[Any]:
    seen, found = set(), []
    for metric in model.metrics:
        for variable in metric.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)
    return found


def _output_infos(function, names: list[str]) -> tuple[TensorInfo, ...]:
    outputs = function.structured_outputs
    return tuple(TensorInfo.from_spec(outputs[n], n) for n in names)


def _build_metrics(
    model: keras.Model,
    plan: ExportPlan,
    predictions: tuple[TensorInfo, ...],
    targets: tuple[TensorInfo, ...],
):
    """Creates the compiled loss trackers' and metrics' variables eagerly, then zeroes them.

    Variables must exist before tracing, and a fresh ``evaluate()`` starts from
    zeroed metrics, which is the state the eval/train graphs restore. They are
    built from zero targets and zero predictions shaped like the serving outputs
    (what decides, e.g., which accuracy "accuracy" means), without running the
    model: a forward pass cost ResNet50 0.4 s and 140 MB of activations.
    """
    names = [p.name for p in predictions]
    clear_losses(model)  # what the last trace's layers added belongs to its graph
    x_packed = plan.inputs.zeros()
    y_packed = pack_targets(model, names, [t.zeros() for t in targets])
    y_pred = pack_targets(model, names, [p.zeros() for p in predictions])
    model.compute_loss(x=x_packed, y=y_packed, y_pred=y_pred, training=False)
    model.compute_metrics(x_packed, y_packed, y_pred)
    for metric in model.metrics:
        metric.reset_state()
