"""Trains a model under Keras's torch backend and saves what the tests compare with.

Run by ``test_other_backends.py`` in a side environment with PyTorch and
``KERAS_BACKEND=torch``: ``python train_on_torch.py OUT``. Writes ``OUT/model.keras``,
``OUT/numbers.npz`` (inputs, targets, torch's predictions and optimizer variables)
and ``OUT/evaluate.json`` (torch's ``evaluate``), plus ``OUT/wrapped.keras``, a model
whose layer runs torch code.
"""

import json
import sys

import keras
import numpy as np

out = sys.argv[1]
assert keras.config.backend() == "torch", keras.config.backend()
keras.utils.set_random_seed(3)
inputs = keras.Input((4,), name="features")
hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
hidden = keras.layers.BatchNormalization(name="norm")(hidden)
hidden = keras.layers.Dropout(0.2, name="drop")(hidden)
outputs = keras.layers.Dense(3, activation="softmax", name="probs")(hidden)
model = keras.Model(inputs, outputs, name="torch_trained")
model.compile(
    optimizer=keras.optimizers.Adam(0.01),
    loss="sparse_categorical_crossentropy",
    metrics=["sparse_categorical_accuracy"],
)
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 4)).astype("float32")
y = rng.integers(0, 3, (64,)).astype("int64")
model.fit(x, y, epochs=2, batch_size=16, verbose=0)
model.save(f"{out}/model.keras")
batch_x, batch_y = x[:16], y[:16]
evaluated = model.evaluate(batch_x, batch_y, batch_size=16, verbose=0, return_dict=True)
optimizer = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
np.savez(
    f"{out}/numbers.npz",
    x=batch_x,
    y=batch_y,
    predictions=model.predict(batch_x, verbose=0),
    **{f"optimizer_{i}": value for i, value in enumerate(optimizer)},
)
with open(f"{out}/evaluate.json", "w") as handle:
    json.dump({k: float(v) for k, v in evaluated.items()}, handle)

import torch  # noqa: E402

wrapped = keras.Sequential(
    [keras.Input((4,)), keras.layers.TorchModuleWrapper(torch.nn.Linear(4, 2), name="torch_linear")]
)
wrapped.compile("adam", "mse")
wrapped.save(f"{out}/wrapped.keras")
