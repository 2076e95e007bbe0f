"""Input and output signatures: inference from a Keras model, naming, sample inputs.

Signatures are kept as small frozen dataclasses of plain values (names, shapes,
dtype strings) so they can travel between pipeline steps and into manifests;
``to_tensor_spec`` turns them back into ``tf.TensorSpec`` where TensorFlow needs it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from export_core.errors import ExportValidationError

keras_tree = keras.tree


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (``None`` for unknown dimensions) and dtype of one tensor."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_tensor_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec(self.shape, tf.as_dtype(self.dtype), name=self.name)

    def zeros(self) -> tf.Tensor:
        """A zero (empty string, False) tensor of this shape, unknown dims as 1."""
        return tf.zeros([d or 1 for d in self.shape], tf.as_dtype(self.dtype))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorInfo:
        return cls(str(data["name"]), tuple(data["shape"]), str(data["dtype"]))

    @classmethod
    def from_spec(cls, spec: tf.TensorSpec, name: str) -> TensorInfo:
        shape = tuple(spec.shape.as_list()) if spec.shape.rank is not None else ()
        return cls(name, shape, spec.dtype.name)


@dataclass(frozen=True)
class InputSignature:
    """The model's inputs, flat and named, plus how to pack them for ``model(...)``.

    Attributes:
        tensors: One entry per input tensor, in ``keras.tree.flatten`` order of the
            structure the model is called with; names are the signature's input keys.
        layout: That structure (one tensor, a list, a dict, or any nesting of them)
            with each tensor replaced by its index in ``tensors``: ``0`` for one
            tensor, ``[0, 1]`` for a list, ``{"age": 0, "geo": [1, 2]}``...
    """

    tensors: tuple[TensorInfo, ...]
    layout: Any = 0
    casts: tuple[str | None, ...] = ()  # the model's dtype, where a tensor is cast to it

    @classmethod
    def by_name(cls, tensors: Sequence[TensorInfo]) -> InputSignature:
        """Flat inputs called as a dict by name (a SavedModel's serving signature)."""
        return cls(tuple(tensors), {t.name: i for i, t in enumerate(tensors)})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    def tensor_specs(self) -> list[tf.TensorSpec]:
        return [t.to_tensor_spec() for t in self.tensors]

    def pack(self, flat: Sequence[Any]) -> Any:
        """Arranges flat tensors in the structure the model is called with, each cast
        to the model's dtype where ``casts`` says so (``cast_inputs``)."""
        if self.casts:
            flat = [
                tf.cast(t, dtype) if dtype else t for t, dtype in zip(flat, self.casts, strict=True)
            ]
        return keras_tree.map_structure(lambda i: flat[i], self.layout)

    def cast_record(self) -> dict[str, dict[str, str]]:
        """For the manifest: ``{input: {"from": its dtype, "to": the model's}}``."""
        return {
            t.name: {"from": t.dtype, "to": dtype}
            for t, dtype in zip(self.tensors, self.casts, strict=False)
            if dtype
        }

    def zeros(self) -> Any:
        """Zero inputs (unknown dimensions as 1), packed for ``model(...)``: builds a model."""
        return self.pack([t.zeros() for t in self.tensors])

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": [t.to_dict() for t in self.tensors], "layout": self.layout}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSignature:
        tensors = tuple(TensorInfo.from_dict(t) for t in data["tensors"])
        return cls(tensors, data.get("layout", 0))


def infer_input_signature(model: Any, input_signature: Any = None) -> InputSignature:
    """Returns the serving inputs of ``model``, from ``input_signature`` if given.

    Args:
        model: A Keras model.
        input_signature: Optional ``tf.TensorSpec`` structure (one spec, a list, a
            dict, or a nesting of them) shaped like the model's first call argument.
            A list holding one nested structure (``tf.function`` style) is accepted too.

    Raises:
        ExportValidationError: When the signature is malformed, or when it is absent
            and cannot be inferred (an unbuilt Sequential, a never-called subclassed
            model).
    """
    model_names = _model_input_names(model)
    if input_signature is not None:
        return _signature_from_specs(input_signature, model_names)
    inputs = _model_inputs(model)
    if inputs is None:
        raise ExportValidationError(
            f"Cannot infer the input signature of model '{model.name}' "
            f"({type(model).__name__}): it has not been built or called yet. "
            "Build it (e.g. model.build((None, 10)) or call it once on data), or pass "
            "input_signature, e.g. input_signature=tf.TensorSpec((None, 10), tf.float32)."
        )
    return inputs


def model_input_signature(model: Any) -> InputSignature | None:
    """The inputs the model itself declares (Functional, Sequential, called), or None."""
    try:
        return _model_inputs(model)
    except (AttributeError, ValueError, TypeError):
        return None


def _signature_from_specs(specs: Any, model_names: list[str] | None) -> InputSignature:
    if isinstance(specs, list | tuple) and len(specs) == 1:
        inner = specs[0]
        if isinstance(inner, list | tuple | dict) or not model_names or len(model_names) == 1:
            specs = inner
    try:
        paths = keras_tree.flatten_with_path(specs)
    except (TypeError, ValueError):
        paths = []
    if not paths or not all(isinstance(s, tf.TensorSpec) for _, s in paths):
        raise ExportValidationError(
            "input_signature must be a tf.TensorSpec or a list/dict (or a nesting) of them, "
            "e.g. tf.TensorSpec((None, 10), tf.float32, name='features'); "
            f"received {specs!r}."
        )
    flat = [s for _, s in paths]
    defaults = model_names if model_names and len(model_names) == len(flat) else None
    names = [
        s.name or (defaults[i] if defaults else path_name(path, "inputs"))
        for i, (path, s) in enumerate(paths)
    ]
    return InputSignature(_infos(flat, names), _layout(specs))


def path_name(path: Sequence[Any], argument: str) -> str:
    """A tensor's input name from its path in the call argument's structure.

    One tensor takes the argument's name; otherwise dict keys and list positions
    joined by ``_``, prefixed by the argument's name when the outermost level is a
    list (``inputs_0``, ``age``, ``user_0``).
    """
    if not path:
        return argument
    parts = [str(p) for p in path]
    if isinstance(path[0], int):
        parts.insert(0, argument)
    return "_".join(parts)


def _layout(structure: Any) -> Any:
    """The structure with each leaf replaced by its flat index."""
    counter = iter(range(1 << 30))
    return keras_tree.map_structure(lambda _: next(counter), structure)


def _infos(specs: Sequence[tf.TensorSpec], names: Sequence[str]) -> tuple[TensorInfo, ...]:
    if len(set(names)) != len(names):
        raise ExportValidationError(
            f"Input names must be unique, got {list(names)}; give each tf.TensorSpec "
            "a distinct name=."
        )
    return tuple(TensorInfo.from_spec(s, n) for s, n in zip(specs, names, strict=True))


def _model_inputs(model: Any) -> InputSignature | None:
    """The signature of a Functional/Sequential or already-called model, else None."""
    try:
        tensors = list(model.inputs)
    except (AttributeError, ValueError):
        tensors = []
    if tensors:
        names = [_input_layer_name(t) for t in tensors]
        specs = [tf.TensorSpec(t.shape, tf.as_dtype(t.dtype)) for t in tensors]
        struct = getattr(model, "_inputs_struct", None)
        if struct is None:
            layout = 0 if len(specs) == 1 else list(range(len(specs)))
            return InputSignature(_infos(specs, names), layout)
        # model.inputs is the structure flattened (keras.tree order); the layout
        # maps each of its tensors back to its place.
        by_id = {id(t): i for i, t in enumerate(tensors)}
        layout = keras_tree.map_structure(lambda t: by_id[id(t)], struct)
        if not keras_tree.is_nested(struct) and len(tensors) == 1:
            layout = 0
        return InputSignature(_infos(specs, names), layout)
    return _called_model_inputs(model)


def _called_model_inputs(model: Any) -> InputSignature | None:
    """A subclassed model's inputs, from the shapes of its first call (as Keras's own
    ``model.export`` takes them): any structure, the batch size free, each tensor of
    the model's ``input_dtype``."""
    if not getattr(model, "built", False):
        return None
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) != 1:
        return None  # never called, or a call() of several arguments
    structure = _shapes_as_leaves(next(iter(shapes.values())))
    if structure is None:
        return None
    dtype = tf.as_dtype(_input_dtype(model)).name
    argument = _call_argument_name(model)
    paths = keras_tree.flatten_with_path(structure)
    infos = tuple(
        TensorInfo(_sanitized(path_name(path, argument)), (None, *shape.dims[1:]), dtype)
        for path, shape in paths
    )
    if len({t.name for t in infos}) != len(infos):
        return None
    return InputSignature(infos, _layout(structure))


def _input_dtype(model: Any) -> str:
    """What a subclassed model's inputs are fed as: Keras casts them to ``input_dtype``
    (the compute dtype); under a mixed policy the serving contract stays the variable
    dtype (float32), as a Functional model's ``keras.Input`` would be."""
    dtype = getattr(model, "input_dtype", None) or "float32"
    policy = getattr(model, "dtype_policy", None)
    if policy is not None and dtype == policy.compute_dtype:
        return policy.variable_dtype
    return dtype


@dataclass(frozen=True)
class _Shape:
    dims: tuple[int | None, ...]


def _shapes_as_leaves(structure: Any) -> Any:
    """Keras's recorded shapes (tuples of ints, nested in dicts and lists) with each
    shape as one leaf; None when a shape cannot be told from a structure."""
    if isinstance(structure, list | tuple):
        if all(isinstance(d, int) or d is None for d in structure):
            return _Shape(tuple(structure)) if structure else None
        items = [_shapes_as_leaves(s) for s in structure]
        return None if any(i is None for i in items) else items
    if isinstance(structure, Mapping):
        items = {str(k): _shapes_as_leaves(v) for k, v in structure.items()}
        return None if any(i is None for i in items.values()) else items
    return None


def _sanitized(name: str) -> str:
    """A name TensorFlow accepts for a placeholder (letters, digits, ``_.-/``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name)
    return cleaned if re.match(r"[A-Za-z0-9.]", cleaned) else f"input_{cleaned}"


def _call_argument_name(model: Any) -> str:
    params = [p for p in inspect.signature(model.call).parameters.values() if p.name != "self"]
    return params[0].name if params else "inputs"


def _model_input_names(model: Any) -> list[str] | None:
    try:
        return [_input_layer_name(t) for t in model.inputs]
    except (AttributeError, ValueError, TypeError):
        return None


def _input_layer_name(tensor: Any) -> str:
    """The name of the layer that produced a symbolic Keras tensor."""
    history = getattr(tensor, "_keras_history", None)
    if history is not None:
        return history.operation.name
    return tensor.name


def output_names(model: Any, outputs: Any) -> list[str]:
    """Names of the model's outputs, in ``tf.nest.flatten(outputs)`` order."""
    if isinstance(outputs, dict):
        return sorted(outputs)
    flat = tf.nest.flatten(outputs)
    try:  # output layers' names, as the original API named predict outputs
        names = [_input_layer_name(t) for t in model.outputs]
    except (AttributeError, ValueError, TypeError):
        names = list(getattr(model, "output_names", None) or [])
    if len(names) == len(flat) and len(set(names)) == len(names):
        return names
    return [f"output_{i}" for i in range(len(flat))]
