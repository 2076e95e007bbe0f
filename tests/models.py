"""Model builders and loader helpers used across the tests."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

STEPS = 2


def functional_regressor(dropout: float = 0.0) -> keras.Model:
    inputs = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    if dropout:
        hidden = keras.layers.Dropout(dropout, name="drop")(hidden)
    outputs = keras.layers.Dense(2, name="prediction")(hidden)
    model = keras.Model(inputs, outputs, name="regressor")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def regression_batch(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, 3)).astype("float32"), rng.standard_normal((n, 2)).astype(
        "float32"
    )


def sequential_classifier() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((4,), name="pixels"),
            keras.layers.Dense(6, activation="relu", name="dense_a"),
            keras.layers.Dense(3, activation="softmax", name="probs"),
        ]
    )
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def multi_io_model() -> keras.Model:
    a = keras.Input((2,), name="left")
    b = keras.Input((3,), name="right")
    merged = keras.layers.Concatenate(name="concat")([a, b])
    out1 = keras.layers.Dense(1, name="score")(merged)
    out2 = keras.layers.Dense(2, activation="softmax", name="label")(merged)
    model = keras.Model([a, b], [out1, out2], name="multi_io")
    model.compile(
        optimizer="adam",
        loss=["mse", "categorical_crossentropy"],
        metrics=[["mae"], ["accuracy"]],
    )
    return model


def dict_input_model() -> keras.Model:
    inputs = {"age": keras.Input((1,), name="age"), "income": keras.Input((1,), name="income")}
    merged = keras.layers.Concatenate()([inputs["age"], inputs["income"]])
    out = keras.layers.Dense(1, name="risk")(merged)
    model = keras.Model(inputs, out, name="dict_inputs")
    model.compile("adam", "mse")
    return model


@keras.saving.register_keras_serializable(package="tests")
class ConfiguredSubclass(keras.Model):
    """A subclassed model that overrides get_config, so it can be rebuilt."""

    def __init__(self, units: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, activation="relu")
        self.out = keras.layers.Dense(1)

    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class PlainSubclass(keras.Model):
    """A subclassed model without get_config."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, inputs):
        return self.dense(inputs)


class ZerosInTraining(keras.layers.Layer):
    """Outputs zeros in training mode, its input otherwise (as TF's own test layer)."""

    def call(self, inputs, training=None):
        return inputs * 0.0 if training else inputs


def model_with_training_branch() -> keras.Model:
    inputs = keras.Input((3,), name="features")
    hidden = keras.layers.Dense(2, name="dense")(inputs)
    outputs = ZerosInTraining(name="zeros_in_training")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    return model


def tf1_load(path: str, tag: str):
    """Loads one MetaGraph in a TF1 session; returns (session, meta_graph)."""
    graph = tf.Graph()
    sess = tf.compat.v1.Session(graph=graph)
    meta_graph = tf.compat.v1.saved_model.load(sess, [tag], path)
    return sess, meta_graph


def tf1_run(sess, meta_graph, key: str, feeds: dict, fetch: list[str] | None = None) -> dict:
    signature = meta_graph.signature_def[key]
    names = fetch or list(signature.outputs)
    fetches = {k: signature.outputs[k].name for k in names}
    return sess.run(fetches, {signature.inputs[k].name: v for k, v in feeds.items()})


def tf1_predict(path: str, feeds: dict) -> dict:
    sess, meta_graph = tf1_load(path, "serve")
    with sess:
        return tf1_run(sess, meta_graph, "serving_default", feeds)


class EagerOnlyScale(keras.layers.Layer):
    """Behaves differently when traced than when run eagerly: a real class of bug
    (Python-side branching on execution mode) that only a reload check catches."""

    def call(self, inputs):
        return inputs * (2.0 if tf.executing_eagerly() else 3.0)


def read_proto(path: str) -> saved_model_pb2.SavedModel:
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return proto
