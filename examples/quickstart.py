"""Train a small real model, export it through the Prefect flow, and show the result.

Runs on the embedded defaults: local disk (./exports) and Prefect's embedded API.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The embedded API's first start on a fresh machine takes longer than Prefect's 20 s default.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_export.cli import main as cli  # noqa: E402
from keras_export.flows import export_keras_model  # noqa: E402


def train() -> keras.Model:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32") > 0).astype("float32")
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(hidden)
    model = keras.Model(inputs, outputs, name="quickstart")
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    return model


def main(destination: str = "exports/quickstart") -> None:
    model = train()
    source = os.path.abspath("exports/quickstart-source.keras")
    os.makedirs(os.path.dirname(source), exist_ok=True)
    model.save(source)
    result = export_keras_model(model=source, destination=os.path.abspath(destination))
    print(
        json.dumps(
            {k: result[k] for k in ("path", "version", "modes", "parity", "seconds")}, indent=2
        )
    )
    print("\nWhat was published (keras-export inspect):")
    cli.main(["inspect", result["path"]])
    # Reload the serving graph the way TensorFlow Serving does and predict.
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta_graph = tf.compat.v1.saved_model.load(sess, ["serve"], result["path"])
        signature = meta_graph.signature_def["serving_default"]
        x = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], "float32")
        got = sess.run(
            signature.outputs["probability"].name, {signature.inputs["features"].name: x}
        )
    print(
        "TF1 session loader prediction:",
        got.ravel().round(4).tolist(),
        "| in-memory:",
        model.predict(x, verbose=0).ravel().round(4).tolist(),
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
