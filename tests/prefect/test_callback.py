"""ExportCallback in a real ``model.fit``: saving, exporting in-process, and a missing Prefect.

The announce path end to end (a served ``on-training-completed`` deployment exporting
what the callback announced, with its metrics in the manifest) is in
``test_deployments.py``, on a real Prefect server.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings

import keras
import pytest
from numpy.testing import assert_allclose

from export_core.errors import ExportValidationError
from keras_export.callbacks import ExportCallback
from tests import models
from tests.servers import free_port


def fit(callback: ExportCallback, epochs: int = 3) -> keras.Model:
    model = models.functional_regressor()
    x, y = models.regression_batch(32)
    model.fit(x, y, validation_split=0.25, epochs=epochs, batch_size=8, verbose=0,
              callbacks=[callback])  # fmt: skip
    return model


@pytest.fixture
def prefect_down():
    """A Prefect API URL where nothing listens (a server that is down)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        yield


@pytest.fixture
def no_prefect_api():
    """No Prefect API configured at all (a laptop, a training cluster without Prefect)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


def test_export_in_process_to_s3_with_a_credentials_block(prefect_api, s3_server, tmp_path):
    from prefect.blocks.system import Secret

    from export_core.registry.versions import list_versions

    bucket = f"b{uuid.uuid4().hex[:10]}"
    options = s3_server.storage_options()
    block = f"fit-{uuid.uuid4().hex[:8]}"
    Secret(value=json.dumps(options)).save(block)
    import fsspec

    fsspec.filesystem("s3", **options, skip_instance_cache=True).mkdir(bucket)
    callback = ExportCallback(
        f"s3://{bucket}/runs/churn.keras",
        f"s3://{bucket}/registry/churn",
        export=True,
        credentials=f"secret/{block}",
        metadata={"dataset": "v7"},
        export_options={"keep_versions": 3},
    )
    model = fit(callback)

    result = callback.result
    assert result is not None and result.path.startswith(f"s3://{bucket}/registry/churn/")
    (info,) = list_versions(f"s3://{bucket}/registry/churn", options)
    final = callback.saved["metrics"]
    assert info.metadata == {**final, "epoch": 3, "dataset": "v7"}
    assert set(final) == {"loss", "mae", "val_loss", "val_mae"}
    assert info.source_sha256 == callback.saved["sha256"]
    # The saved file is the trained model; the export serves the same numbers.
    fs = fsspec.filesystem("s3", **options, skip_instance_cache=True)
    fs.get(f"s3://{bucket}/runs/churn.keras", str(tmp_path / "churn.keras"))
    saved = keras.saving.load_model(tmp_path / "churn.keras")
    x, _ = models.regression_batch()
    local = tmp_path / "version"
    fs.get(result.path, str(local), recursive=True)
    served = models.tf1_predict(str(local), {"features": x})["prediction"]
    assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)
    assert_allclose(saved.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_best_epoch_is_saved_and_exported_not_the_last(tmp_path):
    # mode="max" on the training loss: only the first epoch "improves", so the first
    # epoch's model is the best one, and the one exported.
    callback = ExportCallback(
        str(tmp_path / "runs" / "churn-{epoch:02d}.keras"),
        str(tmp_path / "registry"),
        export=True,
        monitor="loss",
        mode="max",
        save_best_only=True,
        export_options={"modes": ["serve"]},
    )
    last = fit(callback, epochs=3)

    assert sorted(os.listdir(tmp_path / "runs")) == ["churn-01.keras"]
    best = keras.saving.load_model(tmp_path / "runs" / "churn-01.keras")
    x, _ = models.regression_batch()
    served = models.tf1_predict(callback.result.path, {"features": x})["prediction"]
    assert_allclose(served, best.predict(x, verbose=0), atol=1e-5)
    assert not abs(served - last.predict(x, verbose=0)).max() < 1e-4, "the last epoch differs"
    assert callback.result.lineage["metadata"]["epoch"] == 1
    assert callback.result.lineage["metadata"]["monitor"] == "loss"


@pytest.mark.parametrize("configured", [True, False], ids=["api-down", "no-api-url"])
def test_unreachable_prefect_warns_and_still_writes_the_model(configured, tmp_path, request):
    request.getfixturevalue("prefect_down" if configured else "no_prefect_api")
    target = tmp_path / "runs" / "churn.keras"
    callback = ExportCallback(str(target), str(tmp_path / "registry"), announce_timeout=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit(callback, epochs=2)  # fit does not fail

    messages = [str(w.message) for w in caught if "ExportCallback" in str(w.message)]
    assert len(messages) == 1 and "could not announce" in messages[0]
    assert ("did not take the event" if configured else "PREFECT_API_URL") in messages[0]
    assert f"keras-export export {target}" in messages[0]
    assert callback.announced is None
    x, _ = models.regression_batch()
    saved = keras.saving.load_model(target)
    assert_allclose(saved.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert not (tmp_path / "registry").exists()


def test_a_model_uri_that_cannot_be_written_keeps_the_model_locally(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    callback = ExportCallback(str(blocker / "churn.keras"), str(tmp_path / "registry"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = fit(callback, epochs=1)

    (message,) = [str(w.message) for w in caught if "ExportCallback" in str(w.message)]
    kept = callback.saved["local"]
    assert "could not write the model" in message and kept in message
    x, _ = models.regression_batch()
    saved = keras.saving.load_model(kept)
    assert_allclose(saved.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_model_uri_naming_an_unknown_log_says_which_logs_exist(tmp_path):
    callback = ExportCallback(str(tmp_path / "m-{val_auc:.2f}.keras"), str(tmp_path / "r"))
    with pytest.raises(ExportValidationError, match="neither 'epoch' nor a log") as caught:
        fit(callback, epochs=1)
    assert "'val_loss'" in str(caught.value) and not list(tmp_path.glob("*.keras"))


@pytest.mark.parametrize(
    "arguments, words",
    [
        ({"model_uri": "runs/churn.h5"}, "ending in .keras"),
        ({"save_best_only": True}, "needs monitor="),
        ({"monitor": "val_spread", "save_best_only": True}, "mode='min' or mode='max'"),
        ({"mode": "down", "monitor": "loss"}, "mode must be"),
        ({"export_options": {"keep_versions": 2}}, "export=True"),
        ({"export": True, "export_options": {"metadata": {}}}, "may not set ['metadata']"),
        ({"destination": ""}, "destination must be"),
        ({"metadata": {"bad": object()}}, "JSON-serializable"),
    ],
)
def test_bad_arguments_are_refused_before_training(arguments, words):
    given = {"model_uri": "runs/churn.keras", "destination": "registry", **arguments}
    with pytest.raises(ExportValidationError) as caught:
        ExportCallback(given.pop("model_uri"), given.pop("destination"), **given)
    assert words in str(caught.value)
