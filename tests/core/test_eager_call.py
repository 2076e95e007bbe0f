"""The golden forward pass: the model's own eager call, without holding spent activations.

``eager_call`` must give exactly what ``model(x, training=False)`` gives (the same
eager ops on the same tensors, bit for bit) on every kind of graph Keras builds:
branches and merges, several inputs and outputs by name, Sequential, masks, a
nested model, string preprocessing. And it must actually let go of an
intermediate once its consumers have run, which Keras's own walk does not.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from export_core.model import eager
from tests import models


def residual():
    inputs = keras.Input((8,), name="x")
    h = keras.layers.Dense(8, activation="relu")(inputs)
    h = keras.layers.Add()([h, keras.layers.Dense(8)(h), inputs])
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def two_in_two_out():
    a, b = keras.Input((3,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([a, b])
    return keras.Model(
        {"a": a, "b": b},
        {"score": keras.layers.Dense(1, name="score")(h), "cls": keras.layers.Dense(3)(h)},
    )


def sequential():
    return keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dropout(0.5), keras.layers.Dense(2)]
    )


def masked_lstm():
    inputs = keras.Input((6,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(20, 4, mask_zero=True)(inputs)
    return keras.Model(inputs, keras.layers.LSTM(3)(h))


def nested():
    inner = residual()
    inputs = keras.Input((8,), name="x")
    return keras.Model(inputs, keras.layers.Dense(1)(inner(inputs)))


def strings():
    lookup = keras.layers.StringLookup(vocabulary=["a", "b", "c"])
    inputs = keras.Input((2,), dtype="string", name="words")
    h = keras.layers.CategoryEncoding(5, output_mode="multi_hot")(lookup(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def batch_norm():
    inputs = keras.Input((4, 4, 3), name="img")
    h = keras.layers.Conv2D(4, 3)(inputs)
    h = keras.layers.BatchNormalization()(h)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(h))


CASES = {
    "functional": (models.functional_regressor, lambda: np.ones((4, 3), "float32")),
    "residual": (residual, lambda: np.linspace(-1, 1, 32, dtype="float32").reshape(4, 8)),
    "two_in_two_out": (
        two_in_two_out,
        lambda: {"a": np.ones((4, 3), "float32"), "b": np.full((4, 4), 0.5, "float32")},
    ),
    "sequential": (sequential, lambda: np.ones((4, 5), "float32")),
    "masked_lstm": (masked_lstm, lambda: np.array([[1, 2, 3, 0, 0, 0], [4, 5, 0, 0, 0, 0]])),
    "nested": (nested, lambda: np.ones((3, 8), "float32")),
    "strings": (strings, lambda: np.array([["a", "z"], ["c", "b"]], dtype=object)),
    "batch_norm": (batch_norm, lambda: np.ones((2, 4, 4, 3), "float32")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_eager_call_is_the_models_own_call_bit_for_bit(name):
    build, data = CASES[name]
    model = build()
    x = tf.nest.map_structure(tf.constant, data())
    assert eager._functional_of(model) is not None, "the lean walk is the one taken"
    want = model(x, training=False)
    got = eager.eager_call(model, x)
    tf.nest.assert_same_structure(want, got)
    for w, g in zip(tf.nest.flatten(want), tf.nest.flatten(got), strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    graph = eager._functional_of(model)
    assert "_run_through_graph" not in vars(graph), "Keras's own walk is back"


class Remember(keras.layers.Layer):
    """Identity that keeps a weak reference to what it returned."""

    seen: list = []

    def call(self, x):
        y = tf.identity(x)
        Remember.seen.append(weakref.ref(y))
        return y


class AliveAtTheEnd(keras.layers.Layer):
    """Identity that records whether the remembered tensor is still alive."""

    alive: list = []

    def call(self, x):
        AliveAtTheEnd.alive.append(Remember.seen[-1]() is not None)
        return x


def test_a_spent_activation_is_dropped_before_the_model_returns():
    inputs = keras.Input((4,), name="x")
    h = keras.layers.Dense(4)(Remember()(inputs))
    model = keras.Model(inputs, AliveAtTheEnd()(keras.layers.Dense(2)(h)))
    x = tf.ones((2, 4))
    Remember.seen.clear()
    AliveAtTheEnd.alive.clear()
    model(x, training=False)
    eager.eager_call(model, x)
    assert AliveAtTheEnd.alive == [True, False], "Keras's walk holds it; the lean one does not"


def test_a_subclassed_model_is_called_as_it_is():
    class Doubler(keras.Model):
        def call(self, x, training=None):
            return 2 * x

    model = Doubler()
    assert eager._functional_of(model) is None
    np.testing.assert_array_equal(np.asarray(eager.eager_call(model, tf.ones((1, 2)))), 2.0)
