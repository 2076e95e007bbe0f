"""Models people train on text and tables: lookup tables, vocabularies, adapted state."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

SENTENCES = np.array(
    [
        b"the cat sat on the mat",
        b"a dog ran far",
        b"cat and dog",
        b"the end",
        b"",
        b"unknown words",
    ],
    dtype=object,
)
LABELS = np.array([[1.0], [0.0], [1.0], [0.0], [0.0], [1.0]], dtype="float32")
VOCABULARY = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "and"]


def text_classifier(vocabulary_file: str | None = None) -> keras.Model:
    """TextVectorization (adapted, or from a vocabulary file) -> Embedding -> pooling -> Dense."""
    text = keras.Input(shape=(), dtype="string", name="text")
    if vocabulary_file is None:
        vectorize = keras.layers.TextVectorization(
            max_tokens=32, output_sequence_length=6, name="vectorize"
        )
        vectorize.adapt(SENTENCES)
    else:
        vectorize = keras.layers.TextVectorization(
            vocabulary=vocabulary_file, output_sequence_length=6, name="vectorize"
        )
    tokens = vectorize(text)
    embedded = keras.layers.Embedding(40, 8, name="embed")(tokens)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(embedded)
    score = keras.layers.Dense(1, activation="sigmoid", name="score")(pooled)
    model = keras.Model(text, score, name="text_classifier")
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    return model


def write_vocabulary(path: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(VOCABULARY) + "\n")
    return path


def tabular_batch(n: int = 8) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(3)
    colors = np.array([b"red", b"green", b"blue", b"purple"], dtype=object)
    cities = np.array([b"paris", b"lima", b"oslo", b"", b"x"], dtype=object)
    features = {
        "color": colors[rng.integers(0, 4, (n, 1))],
        "city": cities[rng.integers(0, 5, (n, 1))],
        "rooms": rng.choice([1, 2, 3, 7], (n, 1)).astype("int64"),
        "income": rng.normal(50_000, 20_000, (n, 1)).astype("float32"),
        "age": rng.uniform(18, 90, (n, 1)).astype("float32"),
    }
    return features, rng.standard_normal((n, 1)).astype("float32")


def tabular_model() -> keras.Model:
    """Dict inputs: StringLookup, IntegerLookup, Hashing, Normalization, Discretization."""
    features, _ = tabular_batch(64)
    inputs = {
        "color": keras.Input((1,), dtype="string", name="color"),
        "city": keras.Input((1,), dtype="string", name="city"),
        "rooms": keras.Input((1,), dtype="int64", name="rooms"),
        "income": keras.Input((1,), dtype="float32", name="income"),
        "age": keras.Input((1,), dtype="float32", name="age"),
    }
    color = keras.layers.StringLookup(vocabulary=["red", "green", "blue"], output_mode="one_hot")
    rooms = keras.layers.IntegerLookup(output_mode="one_hot", name="rooms_lookup")
    rooms.adapt(features["rooms"])
    city = keras.layers.Hashing(num_bins=4, output_mode="one_hot", name="city_hash")
    income = keras.layers.Normalization(name="income_norm")
    income.adapt(features["income"])
    age = keras.layers.Discretization(num_bins=4, output_mode="one_hot", name="age_bins")
    age.adapt(features["age"])
    merged = keras.layers.Concatenate(name="merged")(
        [
            color(inputs["color"]),
            city(inputs["city"]),
            rooms(inputs["rooms"]),
            income(inputs["income"]),
            age(inputs["age"]),
        ]
    )
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(merged)
    price = keras.layers.Dense(1, name="price")(hidden)
    model = keras.Model(inputs, price, name="tabular")
    model.compile(keras.optimizers.Adam(0.01), "mse", metrics=["mae"])
    return model


@keras.saving.register_keras_serializable(package="tests")
class CustomStepModel(keras.Model):
    """Trains on half the squared error plus an L1 term, tracked in its own metric."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.l1_tracker = keras.metrics.Mean(name="l1")

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            pred = self(x, training=True)
            l1 = tf.reduce_mean(tf.abs(pred - y))
            loss = 0.5 * tf.reduce_mean(tf.square(pred - y)) + l1
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        self.l1_tracker.update_state(l1)
        return {"loss": loss, "l1": self.l1_tracker.result()}

    def test_step(self, data):
        x, y = data
        pred = self(x, training=False)
        return {"loss": tf.reduce_max(tf.abs(pred - y))}


@keras.saving.register_keras_serializable(package="tests")
class EagerOnlyStepModel(keras.Model):
    """A train_step that needs eager execution (it reads a value with .numpy())."""

    def train_step(self, data):
        x, y = data
        loss = float(tf.reduce_mean(tf.square(self(x, training=True) - y)).numpy())
        return {"loss": loss}


def custom_step_model(cls: type = CustomStepModel) -> keras.Model:
    inputs = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(4, activation="tanh", name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="prediction")(hidden)
    model = cls(inputs, outputs, name="custom_step")
    model.compile(keras.optimizers.SGD(0.1), "mse")
    return model
