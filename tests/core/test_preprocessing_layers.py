"""Every Keras preprocessing layer with state, and every input dtype, in all three modes.

Each case is a small compiled model: input -> the layer -> Dense. The export's own
verification compares both loaders with the in-memory model; on top of that the
TF1 serve and eval MetaGraphs are checked against ``model.predict`` and
``model.evaluate`` on the version's golden inputs.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.testing import assert_allclose

import export_core
from export_core.artifacts.golden import read_golden
from tests.models import tf1_load, tf1_run

WORDS = np.array([b"the cat sat", b"a", b"dog ran far away", b"the", b"zzz", b""], dtype=object)
TOKENS = ["the", "cat", "sat", "a", "dog", "ran", "far", "away"]
FLOATS = np.array([[1.0, 200.0], [3.0, 1000.0], [5.0, 600.0], [-2.0, 50.0]], "float32")


def adapted(layer, data):
    layer.adapt(data)
    return layer


def string_case(layer, shape=(1,)):
    return lambda: ({"x": keras.Input(shape, dtype="string", name="x")}, lambda i: layer()(i["x"]))


def vocabulary_file(folder) -> str:
    path = os.path.join(str(folder), "tokens.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(TOKENS) + "\n")
    return path


CASES = {
    "string_lookup_list": lambda d: string_case(
        lambda: keras.layers.StringLookup(vocabulary=TOKENS, output_mode="multi_hot")
    ),
    "string_lookup_adapted_count": lambda d: string_case(
        lambda: adapted(keras.layers.StringLookup(output_mode="count"), WORDS)
    ),
    "string_lookup_file_one_hot": lambda d: string_case(
        lambda: keras.layers.StringLookup(vocabulary=vocabulary_file(d), output_mode="one_hot")
    ),
    "string_lookup_tf_idf": lambda d: string_case(
        lambda: adapted(keras.layers.StringLookup(output_mode="tf_idf"), WORDS.reshape(-1, 1))
    ),
    "text_vectorization_multi_hot": lambda d: string_case(
        lambda: adapted(keras.layers.TextVectorization(output_mode="multi_hot"), WORDS), ()
    ),
    "text_vectorization_tf_idf_padded": lambda d: string_case(
        lambda: adapted(
            keras.layers.TextVectorization(
                max_tokens=16, output_mode="tf_idf", pad_to_max_tokens=True
            ),
            WORDS,
        ),
        (),
    ),
    "text_vectorization_bigrams_count": lambda d: string_case(
        lambda: adapted(keras.layers.TextVectorization(output_mode="count", ngrams=2), WORDS), ()
    ),
    "hashing_strings": lambda d: string_case(
        lambda: keras.layers.Hashing(num_bins=7, output_mode="one_hot")
    ),
    "hashing_salted_strings": lambda d: string_case(
        lambda: keras.layers.Hashing(num_bins=5, salt=[7, 11], output_mode="multi_hot")
    ),
    "integer_lookup_adapted": lambda d: (
        lambda: (
            {"x": keras.Input((1,), dtype="int64", name="x")},
            lambda i: adapted(
                keras.layers.IntegerLookup(output_mode="one_hot"), np.array([[1], [2], [0], [7]])
            )(i["x"]),
        )
    ),
    "integer_lookup_list_pairs": lambda d: (
        lambda: (
            {"x": keras.Input((2,), dtype="int64", name="x")},
            lambda i: keras.layers.IntegerLookup(vocabulary=[3, 5, 8], output_mode="multi_hot")(
                i["x"]
            ),
        )
    ),
    "category_encoding": lambda d: (
        lambda: (
            {"x": keras.Input((2,), dtype="int32", name="x")},
            lambda i: keras.layers.CategoryEncoding(num_tokens=4, output_mode="count")(i["x"]),
        )
    ),
    "hashed_crossing": lambda d: (
        lambda: (
            {
                "a": keras.Input((1,), dtype="string", name="a"),
                "b": keras.Input((1,), dtype="int64", name="b"),
            },
            lambda i: keras.layers.HashedCrossing(num_bins=6, output_mode="one_hot")(
                (i["a"], i["b"])
            ),
        )
    ),
    "normalization_adapted": lambda d: (
        lambda: (
            {"x": keras.Input((2,), name="x")},
            lambda i: adapted(keras.layers.Normalization(), FLOATS)(i["x"]),
        )
    ),
    "normalization_inverted": lambda d: (
        lambda: (
            {"x": keras.Input((2,), name="x")},
            lambda i: adapted(keras.layers.Normalization(invert=True), FLOATS)(i["x"]),
        )
    ),
    "discretization_adapted": lambda d: (
        lambda: (
            {"x": keras.Input((2,), name="x")},
            lambda i: adapted(
                keras.layers.Discretization(num_bins=3, output_mode="one_hot"), FLOATS
            )(i["x"]),
        )
    ),
    "rescaling_float64": lambda d: (
        lambda: (
            {"x": keras.Input((2,), dtype="float64", name="x")},
            lambda i: keras.layers.Rescaling(0.5, offset=1.0)(i["x"]),
        )
    ),
    "bool_input": lambda d: (
        lambda: (
            {"x": keras.Input((3,), dtype="bool", name="x")},
            lambda i: keras.ops.cast(i["x"], "float32"),
        )
    ),
    "uint8_image_resizing": lambda d: (
        lambda: (
            {"x": keras.Input((6, 6, 1), dtype="uint8", name="x")},
            lambda i: keras.layers.Flatten()(
                keras.layers.Resizing(3, 3)(keras.ops.cast(i["x"], "float32"))
            ),
        )
    ),
    "variable_length_tokens_embedding": lambda d: (
        lambda: (
            {"x": keras.Input((None,), dtype="string", name="x")},
            lambda i: keras.layers.GlobalAveragePooling1D()(
                keras.layers.Embedding(12, 3)(keras.layers.StringLookup(vocabulary=TOKENS)(i["x"]))
            ),
        )
    ),
}


def build(case: str, folder) -> keras.Model:
    inputs, body = CASES[case](folder)()
    features = keras.layers.Flatten()(keras.ops.cast(body(inputs), "float32"))
    outputs = keras.layers.Dense(1, name="y")(features)
    single = list(inputs.values())[0] if len(inputs) == 1 else inputs
    model = keras.Model(single, outputs, name=case)
    model.compile(keras.optimizers.SGD(0.01), "mse", metrics=["mae"])
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_preprocessing_layer_exports_every_mode_with_parity(case, tmp_path):
    model = build(case, tmp_path)
    result = export_core.run_export(model, str(tmp_path / "registry"))
    assert result.modes == ("serve", "train", "eval")
    golden = read_golden(result.path)
    feeds = dict(golden.inputs)
    batch = len(next(iter(feeds.values())))
    x = {k: tf.constant(v) for k, v in feeds.items()}
    x = x if len(x) > 1 else next(iter(x.values()))
    expected = model.predict(x, verbose=0)
    assert_allclose(golden.outputs["y"], expected, atol=1e-5)

    sess, meta_graph = tf1_load(result.path, "serve")
    with sess:
        got = tf1_run(sess, meta_graph, "serving_default", feeds)["y"]
    assert_allclose(got, expected, atol=1e-5)
    y = np.linspace(-1, 1, batch, dtype="float32").reshape(batch, 1)
    sess, meta_graph = tf1_load(result.path, "eval")
    with sess:
        evaluated = tf1_run(sess, meta_graph, "eval", {**feeds, "y_target": y})
    want = model.evaluate(x, y, verbose=0, return_dict=True)
    assert_allclose(evaluated["loss"], want["loss"], rtol=1e-5, atol=1e-6)
