"""Shared fixtures: small real Keras models and TensorFlow's own loaders."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests import models  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)


@pytest.fixture(scope="session")
def trained_functional(tmp_path_factory):
    """A compiled functional model trained for two Adam steps, and its export."""
    import export_core

    keras_seed()
    model = models.functional_regressor()
    x, y = models.regression_batch()
    for _ in range(models.STEPS):
        model.train_on_batch(x, y)
    base = tmp_path_factory.mktemp("functional")
    reference = str(base / "reference.keras")
    model.save(reference)  # an independent copy, with optimizer state, for comparisons
    path = export_core.export_saved_model(model, str(base / "export"))
    return model, path, reference, (x, y)


def keras_seed():
    import keras

    keras.utils.set_random_seed(99)


@pytest.fixture
def batch():
    return np.random.default_rng(0).standard_normal((6, 3)).astype("float32")
