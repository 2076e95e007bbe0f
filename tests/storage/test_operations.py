"""How a registry is really operated: full disks, read-only mounts, missing buckets,
stray folders beside the versions, retention that fails, inputs that would change
what clients send."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid

import fsspec
import numpy as np
import pytest

import export_core
from export_core import storage
from export_core.errors import ExportValidationError, StorageError
from export_core.registry import labels, versions
from export_core.registry.serving_config import serving_config
from tests import models
from tests.helpers import CLI


@contextlib.contextmanager
def mounted(folder, *options: str):
    """A filesystem mounted at ``folder`` for the test (tmpfs, or a read-only bind)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", *options, str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this run cannot mount ({' '.join(command)}: {done.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def wide_model():
    """About 1M float32 weights: 4 MB of checkpoint, 12 MB with Adam's slots."""
    import keras

    inputs = keras.Input((1000,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1000, name="out")(inputs))
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_a_full_disk_is_a_storage_error_and_leaves_nothing(tmp_path):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=2m", "tmpfs") as small:
        with pytest.raises(StorageError, match="no space left on device"):
            export_core.export_saved_model(wide_model(), str(small / "registry"))
        leftovers = [os.path.join(d, f) for d, _, files in os.walk(small) for f in files]
        assert leftovers == [], "a failed export left files on the full disk"


def test_a_read_only_destination_is_refused_before_any_work(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    with mounted(target, "--bind", str(target)):
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"this run cannot remount read-only: {done.stderr.decode().strip()}")
        model = models.functional_regressor()
        with pytest.raises(ExportValidationError, match="is read-only"):
            export_core.export_saved_model(model, str(target / "m"))
        model.save(tmp_path / "model.keras")
        cli = subprocess.run(
            [CLI, "export", str(tmp_path / "model.keras"), str(target / "m")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 2 and "is read-only" in cli.stderr, cli.stderr


@pytest.fixture
def s3_bucket(s3_server):
    fsspec.AbstractFileSystem.clear_instance_cache()
    bucket = f"ops{uuid.uuid4().hex[:10]}"
    fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", **s3_server.storage_options())
    fs.mkdir(bucket)
    return bucket, s3_server.storage_options()


def test_a_missing_bucket_is_named_by_label_and_inspect(s3_bucket):
    _, options = s3_bucket
    nowhere = f"s3://nobucket{uuid.uuid4().hex[:8]}/registry"
    with pytest.raises(StorageError, match="Bucket 'nobucket.*does not exist"):
        labels.set_label(nowhere, "stable", 1, options)
    with pytest.raises(StorageError, match="Bucket 'nobucket.*does not exist"):
        versions.inspect_saved_model(f"{nowhere}/1", options)
    command = [CLI, "--storage-options", json.dumps(options), "label", nowhere, "stable", "1"]
    cli = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 3 and "does not exist" in cli.stderr, cli.stderr


STRAY = ["99999999999999999999999", "9223372036854775808", "0042", "00", "-5", "17a"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_only_canonical_int64_folders_are_versions_everywhere(where, tmp_path, request):
    if where == "s3":
        bucket, options = request.getfixturevalue("s3_bucket")
        base = f"s3://{bucket}/registry"
    else:
        base, options = str(tmp_path / "registry"), {}
    model = models.functional_regressor()
    first = export_core.run_export(model, base, storage_options=options)
    dest = storage.Destination.parse(base, options)
    for name in STRAY:  # each a complete-looking copy of the real version
        dest.fs.makedirs(dest.join(name), exist_ok=True)
        for rel in ("saved_model.pb", "export_manifest.json"):
            dest.fs.pipe_file(
                dest.join(name, rel), dest.fs.cat_file(dest.join(str(first.version), rel))
            )
    assert [v.version for v in versions.list_versions(base, options)] == [first.version]
    second = export_core.run_export(model, base, storage_options=options, keep_versions=1)
    assert second.version == first.version + 1 or second.version > first.version
    assert second.version <= 2**63 - 1
    assert [v.version for v in versions.list_versions(base, options)] == [second.version]
    config = serving_config([base], options)
    assert str(second.version) in config and "99999999999999999999999" not in config
    dest.fs.invalidate_cache()
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in dest.fs.ls(dest.path, detail=False)}
    assert set(STRAY) <= names, "retention touched folders that are not versions"


def test_retention_never_removes_the_newest_loadable_version(tmp_path):
    base = tmp_path / "registry"
    model = models.functional_regressor()
    only = export_core.run_export(model, str(base))
    (base / "99999999999999999999999").mkdir()
    (base / "99999999999999999999999" / "saved_model.pb").write_bytes(b"x")
    (base / "99999999999999999999999" / "export_manifest.json").write_text("{}")
    cli = subprocess.run(
        [CLI, "gc", str(base), "--keep", "1"], capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 0, cli.stderr
    assert (base / str(only.version) / "saved_model.pb").exists()


def test_a_retention_failure_after_publishing_is_printed(tmp_path):
    base = tmp_path / "registry"
    model = models.functional_regressor()
    export_core.export_saved_model(model, str(base))
    (base / "labels.json").write_text("not a label document")  # retention must stop
    model.save(tmp_path / "model.keras")
    cli = subprocess.run(
        [CLI, "export", str(tmp_path / "model.keras"), str(base), "--keep-versions", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")},
    )
    assert cli.returncode == 0, cli.stderr
    warnings = [line for line in cli.stderr.splitlines() if line.startswith("keras-export:")]
    assert len(warnings) == 1 and "warning:" in warnings[0], cli.stderr
    assert "retention failed" in warnings[0] and "not a label document" in warnings[0]


def test_an_input_signature_of_another_dtype_is_cast_only_when_asked(tmp_path):
    import tensorflow as tf

    model = models.functional_regressor()
    spec = tf.TensorSpec((None, 3), tf.float64, name="features")
    with pytest.raises(ExportValidationError, match="is float32 in the model, got float64"):
        export_core.run_export(model, str(tmp_path / "a"), input_signature=spec)
    assert not (tmp_path / "a").exists() or not os.listdir(tmp_path / "a")
    result = export_core.run_export(
        model, str(tmp_path / "b"), input_signature=spec, cast_inputs=True
    )
    x = np.random.default_rng(0).standard_normal((4, 3))
    served = models.tf1_predict(result.path, {"features": x})["prediction"]
    np.testing.assert_allclose(served, model.predict(x.astype("float32"), verbose=0), atol=1e-5)
    with open(os.path.join(result.path, "export_manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["input_casts"] == {"features": {"from": "float64", "to": "float32"}}
