"""The scheduled flow: export the newest trained model once, decide "unchanged" for free."""

from __future__ import annotations

import os
import time

import fsspec
import keras
import pytest
from numpy.testing import assert_allclose

from tests import models


def test_scheduled_flow_exports_the_newest_model_once(prefect_api, tmp_path):
    from keras_export.flows import export_newest_model

    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "b").mkdir()
    models.functional_regressor().save(runs / "a" / "model.keras")
    time.sleep(0.05)  # distinct modification times, newest second
    newest = models.functional_regressor()
    newest.save(runs / "b" / "model.keras")
    registry = str(tmp_path / "registry")

    first = export_newest_model(source_prefix=str(runs), destination=registry)
    assert first["skipped"] is False
    assert first["path"].startswith(registry)
    x, _ = models.regression_batch()
    served = models.tf1_predict(first["path"], {"features": x})["prediction"]
    assert_allclose(served, newest.predict(x, verbose=0), atol=1e-5)

    again = export_newest_model(source_prefix=str(runs), destination=registry)
    assert again["skipped"] is True and again["model"].endswith("b/model.keras")
    assert again["decided_by"] == "fingerprint"  # mtime, inode and size: no byte read
    assert os.listdir(registry) == [str(first["version"])]

    time.sleep(0.05)
    models.functional_regressor().save(runs / "a" / "model.keras")  # retrained: now newest
    third = export_newest_model(source_prefix=str(runs), destination=registry)
    assert third["skipped"] is False and third["version"] != first["version"]


def test_scheduled_flow_with_no_model_says_where_it_looked(prefect_api, tmp_path):
    from export_core import ExportValidationError
    from keras_export.flows import export_newest_model

    with pytest.raises(ExportValidationError, match="No .keras file under"):
        export_newest_model(source_prefix=str(tmp_path), destination=str(tmp_path / "r"))


def _model_file(path, seed: int) -> int:
    """A ~1 MB .keras file (263k float32 weights), so any read of it stands out."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((256,), name="features")
    hidden = keras.layers.Dense(1024, activation="relu")(inputs)
    keras.Model(inputs, keras.layers.Dense(1, name="prediction")(hidden)).save(path)
    return os.path.getsize(path)


@pytest.fixture(params=["s3", "gcs"])
def recorded_store(request, s3_server):
    """A bucket on the S3 server or a GCS emulator, reached through a recording proxy."""
    from tests.servers import GCSServer, RecordingProxy

    fsspec.AbstractFileSystem.clear_instance_cache()
    if request.param == "s3":
        proxy = RecordingProxy(s3_server.port).start()
        options, server = {**s3_server.storage_options(), "endpoint_url": proxy.url}, None
    else:
        server = GCSServer()
        proxy = RecordingProxy(server.port)
        server.external_url = proxy.url  # download links in metadata lead through the proxy
        server.start()
        proxy.start()
        options = {"token": "anon", "endpoint_url": proxy.url}
    scheme = {"s3": "s3", "gcs": "gs"}[request.param]
    bucket = f"sched-{request.param}-{os.getpid()}"
    fs = fsspec.filesystem(scheme, **options)
    fs.mkdir(bucket)
    yield request.param, f"{scheme}://{bucket}", fs, options, proxy
    proxy.stop()
    if server is not None:
        server.stop()


def test_an_unchanged_tick_reads_no_byte_of_the_model(prefect_api, recorded_store, tmp_path):
    from keras_export.flows import export_newest_model

    store, bucket, fs, options, proxy = recorded_store
    key = "runs/2026-12-01/model.keras"
    size = _model_file(tmp_path / "v1.keras", seed=1)
    fs.put_file(str(tmp_path / "v1.keras"), f"{bucket}/{key}")
    tick = dict(
        source_prefix=f"{bucket}/runs",
        destination=f"{bucket}/registry",
        storage_options=options,
        serving_only=True,
    )

    def model_reads() -> list[str]:  # GETs of the model's bytes (not of its metadata)
        if store == "s3":
            return proxy.reads_of(f"/{key}")
        return [t for t in proxy.reads_of(key.replace("/", "%2F")) if "alt=media" in t]

    first = export_newest_model(**tick)
    assert first["skipped"] is False
    assert model_reads()  # the proxy sees reads of the model: the export's

    proxy.reset()
    again = export_newest_model(**tick)
    assert again == {**again, "skipped": True, "decided_by": "fingerprint"}
    assert model_reads() == []
    # Everything the store sent for this tick: two listings and one small manifest.
    assert proxy.bytes_returned < size / 10, (proxy.bytes_returned, size, proxy.requests)

    # Identical bytes uploaded again (a training job re-saving an unchanged model): the
    # store's content checksums (ETag / md5Hash + crc32c) still match, so still 0 bytes.
    fs.put_file(str(tmp_path / "v1.keras"), f"{bucket}/{key}")
    proxy.reset()
    assert export_newest_model(**tick)["decided_by"] == "fingerprint"
    assert model_reads() == []

    size = _model_file(tmp_path / "v2.keras", seed=2)  # retrained: new bytes under the same name
    fs.put_file(str(tmp_path / "v2.keras"), f"{bucket}/{key}")
    proxy.reset()
    third = export_newest_model(**tick)
    assert third["skipped"] is False and third["version"] > first["version"]
    assert model_reads()  # the proxy does see the model being read when it is
    assert proxy.bytes_returned >= size
    import hashlib
    import json

    manifest = json.loads(fs.cat_file(f"{third['path']}/export_manifest.json"))
    digest = hashlib.sha256((tmp_path / "v2.keras").read_bytes()).hexdigest()
    assert manifest["source"]["sha256"] == digest  # exported from the new bytes
    assert manifest["source"]["fingerprint"]["size"] == size
