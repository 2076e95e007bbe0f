"""Every way users configure a bucket, on the S3 server and the GCS emulator, through
the Python API, the Prefect flow and the CLI (export, versions, label, gc).

s3fs/botocore take the S3 endpoint from a top-level ``endpoint_url``, from
``client_kwargs``, from ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, from an AWS
config profile, and (through this package's credentials) from Prefect's
``AwsCredentials`` and ``MinIOCredentials`` blocks; gcsfs from ``endpoint_url`` and
``STORAGE_EMULATOR_HOST``. Each is a configuration here. This machine reaches no
cloud: anything that contacted AWS or Google instead of the configured endpoint fails.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import uuid
from dataclasses import dataclass, field

import fsspec
import pytest

import export_core
from export_core import storage
from export_core.errors import StorageError
from export_core.registry import labels, versions
from tests import models
from tests.helpers import CLI

KEY, SECRET = "AKIACONFIGTEST", "configuration-secret"


@dataclass
class Configuration:
    """One way of pointing the clients at a store: options, environment, a block."""

    scheme: str
    options: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    block: str | None = None  # a saved Prefect block's name, for the flow and the CLI


def _aws_block(kind: str, url: str) -> str:
    from prefect_aws import AwsCredentials, MinIOCredentials

    name, endpoint = f"cfg-{uuid.uuid4().hex[:8]}", {"endpoint_url": url}
    if kind == "aws":
        keys = {"aws_access_key_id": KEY, "aws_secret_access_key": SECRET}
        AwsCredentials(**keys, aws_client_parameters=endpoint).save(name)
        return f"aws-credentials/{name}"
    keys = {"minio_root_user": KEY, "minio_root_password": SECRET}
    MinIOCredentials(**keys, aws_client_parameters=endpoint).save(name)
    return f"minio-credentials/{name}"


def _profile(tmp_path, url: str) -> dict:
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile registry]\nendpoint_url = {url}\naws_access_key_id = {KEY}\n"
        f"aws_secret_access_key = {SECRET}\n"
    )
    return {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}


KEYS = {"key": KEY, "secret": SECRET}
KEYS_ENV = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
STYLES = {
    "s3 endpoint_url": lambda s3, gcs, tmp: Configuration("s3", {**KEYS, "endpoint_url": s3}),
    "s3 client_kwargs": lambda s3, gcs, tmp: Configuration(
        "s3", {**KEYS, "client_kwargs": {"endpoint_url": s3}}
    ),
    "s3 AWS_ENDPOINT_URL": lambda s3, gcs, tmp: Configuration(
        "s3", env={**KEYS_ENV, "AWS_ENDPOINT_URL": s3}
    ),
    "s3 AWS_ENDPOINT_URL_S3": lambda s3, gcs, tmp: Configuration(
        "s3", env={**KEYS_ENV, "AWS_ENDPOINT_URL_S3": s3}
    ),
    "s3 profile": lambda s3, gcs, tmp: Configuration(
        "s3", {"profile": "registry"}, env=_profile(tmp, s3)
    ),
    "s3 AwsCredentials block": lambda s3, gcs, tmp: Configuration(
        "s3", block=_aws_block("aws", s3)
    ),
    "s3 MinIOCredentials block": lambda s3, gcs, tmp: Configuration(
        "s3", block=_aws_block("minio", s3)
    ),
    "gcs endpoint_url": lambda s3, gcs, tmp: Configuration(
        "gs", {"token": "anon", "endpoint_url": gcs}
    ),
    "gcs STORAGE_EMULATOR_HOST": lambda s3, gcs, tmp: Configuration(
        "gs", {"token": "anon"}, env={"STORAGE_EMULATOR_HOST": gcs}
    ),
}
WITHOUT_BLOCKS = [name for name in STYLES if "block" not in name]


@pytest.fixture
def configured(request, s3_server, gcs_server, prefect_api, tmp_path, monkeypatch):
    """The configuration, its environment applied, and a fresh bucket on its server."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    config = STYLES[request.param](s3_server.url, gcs_server.url, tmp_path)
    for name, value in config.env.items():
        monkeypatch.setenv(name, value)
    fsspec.AbstractFileSystem.clear_instance_cache()  # instances are cached by arguments
    server = s3_server if config.scheme == "s3" else gcs_server
    bucket = f"cfg{uuid.uuid4().hex[:12]}"
    direct, _ = fsspec.core.url_to_fs(f"{config.scheme}://{bucket}", **server.storage_options())
    direct.mkdir(bucket)
    yield config, f"{config.scheme}://{bucket}/registry", direct
    fsspec.AbstractFileSystem.clear_instance_cache()


def published(direct, base: str) -> list[int]:
    """The complete versions, listed with the server's own explicit options."""
    direct.invalidate_cache()
    path = base.split("://", 1)[1]
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in direct.ls(path, detail=False)]
    return sorted(
        int(n) for n in names if n.isdigit() and direct.exists(f"{path}/{n}/saved_model.pb")
    )


def trained_model():
    model = models.functional_regressor()
    model.train_on_batch(*models.regression_batch())
    return model


@pytest.mark.parametrize("configured", WITHOUT_BLOCKS, indirect=True)
def test_python_api_exports_lists_labels_and_collects(configured):
    config, base, direct = configured
    model = trained_model()
    first = export_core.run_export(model, base, storage_options=config.options)
    second = export_core.run_export(model, base, storage_options=config.options)
    assert published(direct, base) == [first.version, second.version]
    listed = [v.version for v in versions.list_versions(base, config.options)]
    assert listed == [first.version, second.version]
    labels.set_label(base, "stable", first.version, config.options)
    dest = storage.Destination.parse(base, config.options)
    assert storage.prune_versions(dest, 1) == []  # the labelled one stays, the newest too
    assert labels.read_labels(base, config.options).labels == {"stable": first.version}


@pytest.mark.parametrize("configured", list(STYLES), indirect=True)
def test_flow_exports_with_every_configuration(configured):
    from keras_export.flows import export_keras_model

    config, base, direct = configured
    result = export_keras_model(
        model=trained_model(),
        destination=base,
        storage_options=config.options or None,
        credentials=config.block,
    )
    assert published(direct, base) == [result["version"]]


def cli(config, *args: str) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, **config.env, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [CLI, *args, "--json"]
    if config.options:
        command += ["--storage-options", json.dumps(config.options)]
    if config.block:
        command += ["--credentials", config.block]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("configured", list(STYLES), indirect=True)
def test_cli_exports_lists_labels_and_collects(configured, tmp_path):
    config, base, direct = configured
    trained_model().save(tmp_path / "model.keras")
    run = cli(config, "export", str(tmp_path / "model.keras"), base)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    version = json.loads(run.stdout)["version"]
    assert published(direct, base) == [version]
    listed = cli(config, "versions", base)
    assert listed.returncode == 0, listed.stdout + listed.stderr[-2000:]
    assert [v["version"] for v in json.loads(listed.stdout)] == [version]
    label = cli(config, "label", base, "stable", str(version))
    assert label.returncode == 0, label.stdout + label.stderr[-2000:]
    collected = cli(config, "gc", base, "--keep", "1")
    assert collected.returncode == 0, collected.stdout + collected.stderr[-2000:]
    assert json.loads(collected.stdout)["pruned"] == [] and published(direct, base) == [version]


def chain(exc: BaseException) -> list[BaseException]:
    """The error and its causes and contexts; fails on a cycle."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending:
        current = pending.pop()
        assert all(current is not s for s in seen), f"cycle in the chain of {exc!r}"
        seen.append(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return seen


def test_an_unreachable_configured_endpoint_is_named_and_the_error_is_sound(monkeypatch):
    """The endpoint probed is the configured one, wherever it was configured."""
    from tests.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    fsspec.AbstractFileSystem.clear_instance_cache()
    for options in ({**KEYS, "client_kwargs": {"endpoint_url": dead}}, dict(KEYS)):
        with pytest.raises(StorageError, match="127.0.0.1") as caught:
            export_core.export_saved_model(
                trained_model(), "s3://bucket/m", storage_options=options
            )
        assert "amazonaws" not in str(caught.value)
        for error in chain(caught.value):
            again = pickle.loads(pickle.dumps(error))
            assert type(again) is type(error) and str(again) == str(error)
