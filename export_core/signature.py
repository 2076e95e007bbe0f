"""Input and output signatures: inference from a Keras model, naming, sample inputs.

Signatures are kept as small frozen dataclasses of plain values (names, shapes,
dtype strings) so they can travel between pipeline steps and into manifests;
``to_tensor_spec`` turns them back into ``tf.TensorSpec`` where TensorFlow needs it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from export_core.errors import ExportValidationError

SINGLE, LIST, DICT = "single", "list", "dict"
SAMPLE_WORDS = (b"the cat sat", b"a", b"", b"dog ran far away", b"zzz-unknown", b"42", b"the")


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
        tensors: One entry per input tensor; names are the signature's input keys.
        structure: ``"single"``, ``"list"`` or ``"dict"`` — what ``model.call`` takes.
        keys: For ``"dict"``, the dict key of each tensor (same order as ``tensors``).
    """

    tensors: tuple[TensorInfo, ...]
    structure: str = SINGLE
    keys: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    def tensor_specs(self) -> list[tf.TensorSpec]:
        return [t.to_tensor_spec() for t in self.tensors]

    def pack(self, flat: Sequence[Any]) -> Any:
        """Arranges flat tensors in the structure the model is called with."""
        if self.structure == SINGLE:
            return flat[0]
        if self.structure == DICT:
            return dict(zip(self.keys, flat, strict=True))
        return list(flat)

    def zeros(self) -> Any:
        """Zero inputs (unknown dimensions as 1), packed for ``model(...)``: builds a model."""
        return self.pack([t.zeros() for t in self.tensors])

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensors": [t.to_dict() for t in self.tensors],
            "structure": self.structure,
            "keys": list(self.keys),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSignature:
        tensors = tuple(TensorInfo.from_dict(t) for t in data["tensors"])
        return cls(tensors, data.get("structure", SINGLE), tuple(data.get("keys", ())))


def infer_input_signature(model: Any, input_signature: Any = None) -> InputSignature:
    """Returns the serving inputs of ``model``, from ``input_signature`` if given.

    Args:
        model: A Keras model.
        input_signature: Optional nested ``tf.TensorSpec`` structure (a single spec,
            a list or a dict) shaped like the model's first call argument. A list
            holding one nested structure (``tf.function`` style) is accepted too.

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
    flat = tf.nest.flatten(specs)
    if not flat or not all(isinstance(s, tf.TensorSpec) for s in flat):
        raise ExportValidationError(
            "input_signature must be a tf.TensorSpec or a list/dict of them, e.g. "
            "tf.TensorSpec((None, 10), tf.float32, name='features'); "
            f"received {specs!r}."
        )
    if isinstance(specs, dict):
        keys = tuple(sorted(specs))
        names = [specs[k].name or k for k in keys]
        return InputSignature(_infos([specs[k] for k in keys], names), DICT, keys)
    seq = list(specs) if isinstance(specs, list | tuple) else [specs]
    if any(isinstance(s, list | tuple | dict) for s in seq):
        raise ExportValidationError(
            "input_signature may be nested one level only (a spec, a list of specs or "
            f"a dict of specs); received {specs!r}."
        )
    defaults = model_names if model_names and len(model_names) == len(seq) else None
    names = [
        s.name or (defaults[i] if defaults else ("inputs" if len(seq) == 1 else f"input_{i}"))
        for i, s in enumerate(seq)
    ]
    structure = SINGLE if not isinstance(specs, list | tuple) else LIST
    return InputSignature(_infos(seq, names), structure)


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
        if isinstance(struct, dict):
            keys = tuple(struct)
            by_id = {id(t): i for i, t in enumerate(tensors)}
            order = [by_id[id(struct[k])] for k in keys]
            return InputSignature(
                _infos([specs[i] for i in order], [names[i] for i in order]), DICT, keys
            )
        structure = LIST if isinstance(struct, list | tuple) else SINGLE
        return InputSignature(_infos(specs, names), structure)
    return _called_model_inputs(model)


def _called_model_inputs(model: Any) -> InputSignature | None:
    """Subclassed models record the shape of their first call in the build config."""
    if not getattr(model, "built", False):
        return None
    build = model.get_build_config() or {}
    shape = build.get("input_shape")
    if shape is None or not isinstance(shape, list | tuple):
        return None
    if shape and all(isinstance(s, list | tuple) for s in shape):
        return None  # several inputs: the structure is unknown, ask for input_signature
    dtype = getattr(model, "input_dtype", None) or "float32"
    name = _call_argument_name(model)
    return InputSignature((TensorInfo(name, tuple(shape), tf.as_dtype(dtype).name),))


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


# Verification synthesizes SAMPLES examples, or LARGE_SAMPLES when one example has
# LARGE_EXAMPLE elements or more across the inputs (an image: 224x224x3 = 150,528).
# Every loader runs the model on them at once, each holding the activations: two
# ResNet50 examples fewer are 60-80 MB less at the peak of a serving-only export.
# An error of the export shows on every example; two still test the batch axis.
SAMPLES = 4
LARGE_SAMPLES = 2
LARGE_EXAMPLE = 2**16
UNKNOWN_DIM = 3


def sample_count(signature: InputSignature) -> int:
    """How many examples ``synthesize_inputs`` makes for ``signature``."""
    elements = sum(
        int(np.prod([d if d is not None else UNKNOWN_DIM for d in info.shape[1:]]))
        for info in signature.tensors
    )
    return LARGE_SAMPLES if elements >= LARGE_EXAMPLE else SAMPLES


def synthesize_inputs(
    signature: InputSignature, batch_size: int | None = None, seed: int = 0
) -> dict:
    """Deterministic sample inputs for each signature input (unknown dims -> small).

    ``batch_size`` defaults to ``sample_count(signature)``.
    """
    rng = np.random.default_rng(seed)
    batch_size = sample_count(signature) if batch_size is None else batch_size
    samples = {}
    for info in signature.tensors:
        shape = [
            batch_size if i == 0 and d is None else (d if d is not None else UNKNOWN_DIM)
            for i, d in enumerate(info.shape)
        ]
        dtype = tf.as_dtype(info.dtype)
        if dtype.is_floating:
            value = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            value = rng.integers(0, 2, size=shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            value = rng.integers(0, 2, size=shape).astype(bool)
        else:  # text: words, an empty string and an unknown token, each of any length
            words = np.array(SAMPLE_WORDS, dtype=object)
            value = words[rng.integers(0, len(words), size=shape)]
        samples[info.name] = value
    return samples
