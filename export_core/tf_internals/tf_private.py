"""Every private TensorFlow and Keras API the exporter uses, in one place.

TensorFlow offers no public way to build a MetaGraphDef without writing a
checkpoint, or to find the objects a traced function captures; Keras none to
clone without safe mode. These helpers wrap what ``tf.saved_model.save`` and
``keras.models.clone_model`` use themselves. They were checked on the releases in
``SUPPORTED_TENSORFLOW`` (the tests run on the lowest and the highest); on any
other release a call that no longer fits raises ``EnvironmentSetupError`` naming
that range instead of an AttributeError from deep inside TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import tensorflow as tf
from keras.src import tree as keras_tree  # noqa: F401 - re-exported
from keras.src.backend.common import global_state as keras_global_state
from keras.src.backend.common.stateless_scope import StatelessScope
from keras.src.models.functional import Functional  # noqa: F401 - re-exported
from keras.src.saving.serialization_lib import SafeModeScope  # noqa: F401 - re-exported
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow.python.framework import dtypes, ops
from tensorflow.python.framework import meta_graph as meta_graph_lib
from tensorflow.python.ops.resource_variable_ops import BaseResourceVariable
from tensorflow.python.saved_model import constants as saved_model_constants
from tensorflow.python.saved_model import loader_impl, path_helpers
from tensorflow.python.saved_model import save as tf_save
from tensorflow.python.trackable.base import Trackable

from export_core.errors import EnvironmentSetupError

SUPPORTED_TENSORFLOW = ("2.19", "2.20", "2.21")
SUPPORTED_PIN = "tensorflow>=2.19,<2.22"
SAVED_MODEL_SCHEMA_VERSION = saved_model_constants.SAVED_MODEL_SCHEMA_VERSION


def tensorflow_release() -> str:
    return ".".join(tf.__version__.split(".")[:2])


def guarded(function: Callable) -> Callable:
    """Turns a private API that changed shape into an error naming the supported range."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (AttributeError, TypeError, ValueError, ImportError) as exc:
            if tensorflow_release() in SUPPORTED_TENSORFLOW:
                raise  # a supported release: a real error of the caller's, not an API change
            raise EnvironmentSetupError(
                f"TensorFlow {tf.__version__} changed an internal API the exporter relies on "
                f"({function.__name__}: {type(exc).__name__}: {exc}). Supported: TensorFlow "
                f"{', '.join(SUPPORTED_TENSORFLOW)}; install one of them, e.g. "
                f"pip install '{SUPPORTED_PIN}'."
            ) from exc

    return call


@guarded
def build_meta_graph(
    root: Any, signatures: dict, options: tf.saved_model.SaveOptions
) -> tuple[meta_graph_pb2.MetaGraphDef, dict[str, str], list[tuple[str, bool]]]:
    """One MetaGraphDef from ``root`` as ``tf.saved_model.save`` builds it, no checkpoint.

    Returns:
        The MetaGraphDef; its assets (file name under ``assets/`` -> original
        path); and ``(handle op, trainable)`` of each variable in its graph except
        the string variables that hold asset paths (filled by the init op).
    """
    meta_graph = meta_graph_pb2.MetaGraphDef()
    _meta, graph, _saver, asset_info, *_ = tf_save._build_meta_graph(  # noqa: SLF001
        root, signatures, options, meta_graph
    )
    asset_inits = {id(op) for op in asset_info.asset_initializers_by_resource.values()}
    variables = [
        (v.handle.op.name, bool(v.trainable))
        for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
        if id(getattr(v, "_initializer_op", None)) not in asset_inits
    ]
    ops.dismantle_graph(graph)  # frees the exported graph's Python objects now
    return meta_graph, dict(asset_info.asset_filename_map), variables


@guarded
def shared_name(variable: tf.Variable) -> bytes:
    """The ``shared_name`` the SavedModel builder gives the variable's graph copy."""
    return variable._shared_name.encode()  # noqa: SLF001 - the only stable link


@guarded
def stripped_op_list(graph_def: Any) -> Any:
    return meta_graph_lib.stripped_op_list_for_graph(graph_def)


def captured_owner(tensor: Any) -> Any | None:
    """The trackable (variable, lookup table...) a captured resource handle belongs to."""
    parent = getattr(tensor, "_parent_trackable", None)
    return parent() if parent is not None else None


def has_checkpoint_state(resource: Any) -> bool:
    """Whether a resource saves tensors in checkpoints (MutableHashTable does)."""
    return type(resource)._serialize_to_tensors is not Trackable._serialize_to_tensors


@guarded
def parse_saved_model(path: str) -> saved_model_pb2.SavedModel:
    """``saved_model.pb`` or ``.pbtxt`` of a local folder, as TensorFlow's loaders read it."""
    return loader_impl.parse_saved_model(path)


@guarded
def custom_gradient_names() -> set[str]:
    """The gradient functions ``tf.custom_gradient`` registered, process-wide, by name."""
    return {name for name in ops._gradient_registry._registry if name.startswith("CustomGradient-")}


@guarded
def drop_gradients(names: set[str]) -> None:
    """Unregisters the gradient functions ``names`` (see ``heap``)."""
    registry = ops._gradient_registry._registry
    for name in names:
        registry.pop(name, None)


class _ParsedLoader(loader_impl.SavedModelLoader):
    """TensorFlow's TF1 loader over a SavedModel proto the caller parsed already."""

    def __init__(self, path: str, saved_model: saved_model_pb2.SavedModel) -> None:  # noqa: D107
        self._export_dir = path
        self._variables_path = path_helpers.get_variables_path(path)
        self._saved_model = saved_model


@guarded
def tf1_session_load(
    sess: Any,
    path: str,
    tag: str,
    import_lock: Any,
    restore: bool = True,
    saved_model: saved_model_pb2.SavedModel | None = None,
) -> meta_graph_pb2.MetaGraphDef:
    """``tf.compat.v1.saved_model.load(sess, [tag], path)``, its graph import under
    ``import_lock``: the same three steps (import the MetaGraph, run its restore op,
    run its init op), so that restoring and running may overlap another load.
    ``restore=False`` skips the restore (see ``restore_check``), and the init op
    too when it is a ``NoOp`` with nothing to wait for: running it would only make
    the session copy the graph and its functions (ResNet50's train graph: 140 MB).
    ``saved_model``, the folder's ``saved_model.pb`` parsed once for several loads,
    spares each its own parse (ResNet50 in all modes: 64 MB per load in memory)."""
    if saved_model is None:
        loader = loader_impl.SavedModelLoader(path)
    else:
        loader = _ParsedLoader(path, saved_model)
    with sess.graph.as_default():
        with import_lock:
            saver, _ = loader.load_graph(sess.graph, [tag])
        if restore:
            loader.restore_variables(sess, saver)
        meta_graph = loader.get_meta_graph_def_from_tags([tag])
        init_op = loader_impl.get_init_op(meta_graph)
        if restore or not _runs_nothing(init_op):
            loader.run_init_ops(sess, [tag])
    return meta_graph


def _runs_nothing(op: Any) -> bool:
    return op is None or (op.type == "NoOp" and not op.inputs and not op.control_inputs)


def dtype_name(enum: int) -> str:
    return dtypes.as_dtype(enum).name


_UNINITIALIZED = "uninitialized_variables"  # Keras's registry of deferred variables


@contextlib.contextmanager
def deferred_variables() -> Iterator[list]:
    """Keras variables created inside are not allocated until ``initialize_deferred``.

    Yields the list of them (filled as they are created). Keras's ``StatelessScope``
    defers a variable that has an initializer and registers it for the scope's
    exit; the registration is undone here, so the caller decides each one's fate.
    """
    before = list(keras_global_state.get_global_attribute(_UNINITIALIZED, []) or [])
    created: list = []
    try:
        with StatelessScope(initialize_variables=False):
            yield created
    finally:
        registered = keras_global_state.get_global_attribute(_UNINITIALIZED, []) or []
        known = {id(v) for v in before}
        created.extend(v for v in registered if id(v) not in known)
        keras_global_state.set_global_attribute(_UNINITIALIZED, before)


@guarded
def initialize_deferred(variable: Any) -> None:
    """Allocates a variable ``deferred_variables`` created, from its initializer."""
    if variable._value is None:  # noqa: SLF001
        variable._deferred_initialize()  # noqa: SLF001


def is_plain_variable(value: Any) -> bool:
    """A resource variable of one device, as Keras creates them outside a distribution
    strategy: eagerly (``ResourceVariable``) or inside a first ``tf.function`` call, as
    ``fit`` creates optimizer slots (``UnliftedInitializerVariable``). The
    SavedModel builder and checkpoints treat both alike."""
    return isinstance(value, BaseResourceVariable)


@guarded
def share_backing_variable(dst: Any, src: Any) -> None:
    """Makes the Keras variable ``dst`` read ``src``'s backing ``tf.Variable``.

    Keras 3 keeps a variable's storage in ``_value``; its public ``assign`` would copy.
    """
    if not hasattr(dst, "_value"):
        raise AttributeError("keras.Variable._value")
    dst._value = src.value  # noqa: SLF001


@guarded
def clear_losses(model: Any) -> None:
    """Drops the losses layers added in their last call (``add_loss``, activity
    regularizers): ``model.losses`` holds them until the next call, and after a
    trace they belong to that trace's graph."""
    model._clear_losses()  # noqa: SLF001


@guarded
def keras_compute_loss(model: Any, *args: Any, **kwargs: Any) -> Any:
    """``Trainer._compute_loss`` of the model's class: what ``train_step`` and
    ``test_step`` call (it passes ``training`` only to a ``compute_loss`` taking it)."""
    return type(model)._compute_loss(model, *args, **kwargs)  # noqa: SLF001


@guarded
def iteration_counter(optimizer: Any) -> Any:
    """The Keras variable that counts the optimizer's train steps (one per call).

    ``optimizer.iterations`` is that variable, except under gradient accumulation,
    where it is a tensor (``_iterations // gradient_accumulation_steps``) computed
    from the per-call counter; a ``LossScaleOptimizer`` answers with its inner one's.
    """
    counter = optimizer.iterations
    if hasattr(counter, "assign_add") and hasattr(counter, "value"):
        return counter
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        return iteration_counter(inner)
    return optimizer._iterations  # noqa: SLF001


def untracked_optimizer_variables(optimizer: Any) -> list:
    """Variables an optimizer (or one it wraps) holds as attributes without listing
    them in ``optimizer.variables``, in a fixed order.

    Keras lists what ``add_variable`` creates; a variable created otherwise while
    tracking is off is missing: Nadam's ``_u_product`` inside a
    ``LossScaleOptimizer`` (whose ``build`` turns tracking off), which Keras's own
    ``.keras`` files then do not save either. The train step still reads it.
    """
    listed = {id(v) for v in optimizer.variables}
    found: list = []
    pending = [optimizer]
    while pending:
        current = pending.pop(0)
        for value in vars(current).values():
            if _is_keras_variable(value) and id(value) not in listed:
                listed.add(id(value))
                found.append(value)
        pending.extend(_wrapped_optimizers(current))
    return found


def _wrapped_optimizers(optimizer: Any) -> list:
    inner = [getattr(optimizer, "inner_optimizer", None)]
    inner += list(getattr(optimizer, "_inner_optimizers", None) or [])
    return [o for o in inner if o is not None]


def _is_keras_variable(value: Any) -> bool:
    from keras import Variable

    return isinstance(value, Variable)


@guarded
def sublayers(model: Any) -> list:
    """Every layer inside ``model``, nested ones too, in Keras's own order."""
    return list(model._flatten_layers(include_self=False))  # noqa: SLF001
