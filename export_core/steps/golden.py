"""Step 2, golden: the inputs verification feeds, and the model's outputs on them.

The inputs are the caller's ``sample_inputs`` (a dict by input name, a list in
input order, or one array), else synthesized from the signature, deterministically:
``SAMPLES`` examples (``LARGE_SAMPLES`` when one example is as big as an image, since
every loader holds the activations of all of them at once), random normals for
floats, 0/1 for integers and booleans, words (one empty, one unknown) for strings.
The outputs are the model's own eager call on them (``model.eager``), computed
before any clone exists. Both go into the version as ``golden.npz``
(``artifacts.golden``), and every later check compares against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from export_core.artifacts.golden import Golden, as_bytes_array, is_text, read_golden
from export_core.errors import VerificationError
from export_core.model.eager import eager_call
from export_core.model.signature import InputSignature, output_names
from export_core.steps.parity import RTOL, tolerance_for

SAMPLE_WORDS = (b"the cat sat", b"a", b"", b"dog ran far away", b"zzz-unknown", b"42", b"the")


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


def normalize_samples(inputs: InputSignature, samples: Any) -> dict[str, np.ndarray]:
    """Accepts a dict by input name, a list in input order, or one array."""
    if isinstance(samples, Mapping):
        missing = [n for n in inputs.names if n not in samples]
        if missing:
            raise VerificationError(
                f"sample_inputs lacks {missing}; give one array per serving input "
                f"{list(inputs.names)}."
            )
        return {n: _feedable(samples[n]) for n in inputs.names}
    seq = list(samples) if isinstance(samples, list | tuple) else [samples]
    if len(seq) != len(inputs.names):
        raise VerificationError(
            f"sample_inputs has {len(seq)} arrays; the model has {len(inputs.names)} "
            f"serving inputs {list(inputs.names)}."
        )
    return {n: _feedable(v) for n, v in zip(inputs.names, seq, strict=True)}


def _feedable(value: Any) -> np.ndarray:
    """An array TensorFlow feeds as is: text (str, bytes) as an object array of bytes."""
    array = np.asarray(value)
    return as_bytes_array(array) if is_text(array) else array


def golden_for(model: keras.Model, inputs: InputSignature, sample_inputs: Any = None) -> Golden:
    """The inputs verification feeds and what ``model`` returns on them."""
    synthesized = sample_inputs is None
    samples = synthesize_inputs(inputs) if synthesized else sample_inputs
    feeds = normalize_samples(inputs, samples)
    return Golden(
        feeds, expected_outputs(model, inputs, feeds), synthesized, model_tolerance(model)
    )


def model_tolerance(model: keras.Model) -> float:
    """rtol = atol for the model's outputs, from the dtypes its layers compute in."""
    dtypes, pending = set(), [model]
    while pending:
        layer = pending.pop()
        dtypes.add(str(getattr(layer, "compute_dtype", "float32")))
        pending.extend(getattr(layer, "layers", None) or [])
    return tolerance_for(dtypes)


def expected_outputs(model, inputs: InputSignature, feeds: dict) -> dict[str, np.ndarray]:
    """What ``model`` returns on ``feeds``: its own call, ``model(x, training=False)``."""
    flat = [tf.constant(feeds[n]) for n in inputs.names]
    outputs = eager_call(model, inputs.pack(flat))  # model(x, training=False), lean
    names = output_names(model, outputs)
    return {n: np.asarray(v) for n, v in zip(names, tf.nest.flatten(outputs), strict=True)}


@dataclass(frozen=True)
class Reference:
    """What verify-reload feeds, and what the loaded graphs must give on it.

    Attributes:
        feeds: The inputs, by serving input name.
        stored: The outputs ``golden.npz`` recorded (re-verifying without the model).
        model: The in-memory model, when there is one: its own call is the reference.
        synthesized: Whether the inputs were synthesized from the signature.
        tolerance: rtol = atol for the outputs (see ``parity``).
    """

    feeds: dict[str, np.ndarray]
    inputs: InputSignature
    stored: dict | None
    model: keras.Model | None
    synthesized: bool
    tolerance: float

    def expected_outputs(self) -> dict | None:
        """None when neither model nor ``golden.npz`` says: the TF1 loader is the reference."""
        if self.model is not None:
            return expected_outputs(self.model, self.inputs, self.feeds)
        return self.stored


def reference_for(
    folder: str, model: keras.Model | None, inputs: InputSignature, sample_inputs: Any = None
) -> Reference:
    """The inputs are ``sample_inputs`` if given, else the version's own ``golden.npz``,
    else synthesized from the signature; the reference outputs are the model's call on
    them, else those ``golden.npz`` recorded (re-verifying a published version without
    its source), else none (a version without ``golden.npz``: the TF1 loader's outputs,
    which the TF2 loader must then match)."""
    stored = read_golden(folder) if sample_inputs is None else None
    tolerance = model_tolerance(model) if model is not None else RTOL
    if stored is not None:
        feeds = normalize_samples(inputs, stored.inputs)
        tolerance = stored.tolerance if model is None else tolerance
        outputs = dict(stored.outputs) if model is None else None
        return Reference(feeds, inputs, outputs, model, stored.synthesized, tolerance)
    synthesized = sample_inputs is None
    samples = synthesize_inputs(inputs) if synthesized else sample_inputs
    return Reference(
        normalize_samples(inputs, samples), inputs, None, model, synthesized, tolerance
    )
