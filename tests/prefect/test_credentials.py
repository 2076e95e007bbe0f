"""Credentials through Prefect blocks; no secret in anything Prefect stores or shows.

Real parts: a Prefect test API, the S3 test server (moto; one with authentication
on for wrong secrets) and the GCS emulator, all on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import fsspec
import pytest
from numpy.testing import assert_allclose

from tests import models
from tests.helpers import CLI


def new_secret() -> str:
    return f"sEcReT-{uuid.uuid4().hex}"


def bucket_with_model(server_options: dict, scheme: str, tmp_path) -> tuple[str, object, object]:
    """A fresh bucket holding src/model.keras; returns its name, the filesystem, the model."""
    fsspec.AbstractFileSystem.clear_instance_cache()
    bucket = f"b{uuid.uuid4().hex[:12]}"
    fs, _ = fsspec.core.url_to_fs(f"{scheme}://{bucket}", **server_options)
    fs.mkdir(bucket)
    model = models.functional_regressor()
    model.save(tmp_path / "model.keras")
    fs.put_file(str(tmp_path / "model.keras"), f"{bucket}/src/model.keras")
    return bucket, fs, model


def aws_block(s3_url: str, secret: str, key: str = "AKIATESTKEY"):
    from prefect_aws import AwsCredentials

    return AwsCredentials(
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_client_parameters={"endpoint_url": s3_url},
    )


def everything_prefect_stored(flow_run_id) -> str:
    """Flow runs, task runs, logs, artifacts and events, as the API returns them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all()
    runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        parts = [
            [r.model_dump(mode="json") for r in client.read_flow_runs()],
            [t.model_dump(mode="json") for t in client.read_task_runs(flow_run_filter=runs)],
            [
                log.model_dump(mode="json")
                for log in client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
                )
            ],
            [a.model_dump(mode="json") for a in client.read_artifacts()],
            all_events(client),
        ]
    return json.dumps(parts)


def all_events(client) -> list[dict]:
    page, events = client.read_events(limit=50), []
    while True:
        events += [e.model_dump(mode="json") for e in page.events]
        if not page.next_page:
            return events
        page = client.read_events_page(str(page.next_page))


def assert_secret_nowhere(secret: str, state, fs, bucket: str) -> dict:
    """The secret is in no API record of the run and not in the published manifest."""
    stored = everything_prefect_stored(state.state_details.flow_run_id)
    assert secret not in stored
    result = state.result()
    assert secret not in json.dumps(result)
    manifest = fs.cat_file(f"{bucket}/registry/{result['version']}/export_manifest.json")
    assert secret.encode() not in manifest
    return result


def assert_serves_like(model, fs, bucket: str, version: int, tmp_path) -> None:
    """The published version, downloaded, predicts what the model predicts."""
    local = tmp_path / f"download-{version}"
    prefix = f"{bucket}/registry/{version}/"
    remote = fs.find(prefix)
    fs.get(remote, [str(local / r[len(prefix) :]) for r in remote])
    x, _ = models.regression_batch()
    served = models.tf1_predict(str(local), {"features": x})["prediction"]
    assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)


def test_aws_block_by_object_and_by_name_stores_no_secret(prefect_api, s3_server, tmp_path):
    from keras_export.flows import export_keras_model

    secret = new_secret()
    bucket, fs, model = bucket_with_model(s3_server.storage_options(secret=secret), "s3", tmp_path)
    block = aws_block(s3_server.url, secret)
    name = f"registry-writer-{uuid.uuid4().hex[:8]}"
    for credentials in (block, f"aws-credentials/{name}"):
        if isinstance(credentials, str):
            block.save(name)
        state = export_keras_model(
            model=f"s3://{bucket}/src/model.keras",
            destination=f"s3://{bucket}/registry",
            credentials=credentials,
            return_state=True,
        )
        result = assert_secret_nowhere(secret, state, fs, bucket)
        assert_serves_like(model, fs, bucket, result["version"], tmp_path)


def test_minio_block_by_name_exports_to_the_s3_server(prefect_api, s3_server, tmp_path):
    from prefect_aws import MinIOCredentials

    from keras_export.flows import export_keras_model

    secret = new_secret()
    bucket, fs, _ = bucket_with_model(s3_server.storage_options(secret=secret), "s3", tmp_path)
    name = f"lab-{uuid.uuid4().hex[:8]}"
    MinIOCredentials(
        minio_root_user="minio-user",
        minio_root_password=secret,
        aws_client_parameters={"endpoint_url": s3_server.url},
    ).save(name)
    state = export_keras_model(
        model=f"s3://{bucket}/src/model.keras",
        destination=f"s3://{bucket}/registry",
        credentials=f"minio-credentials/{name}",
        return_state=True,
    )
    assert_secret_nowhere(secret, state, fs, bucket)


def test_secret_block_of_gcsfs_options_exports_to_the_gcs_emulator(
    prefect_api, gcs_server, tmp_path
):
    from prefect.blocks.system import Secret

    from keras_export.flows import export_keras_model

    bucket, fs, model = bucket_with_model(gcs_server.storage_options(), "gs", tmp_path)
    name = f"gcs-ci-{uuid.uuid4().hex[:8]}"
    Secret(value=json.dumps(gcs_server.storage_options())).save(name)
    state = export_keras_model(
        model=f"gs://{bucket}/src/model.keras",
        destination=f"gs://{bucket}/registry",
        credentials=f"secret/{name}",
        return_state=True,
    )
    assert_serves_like(model, fs, bucket, state.result()["version"], tmp_path)
    stored = everything_prefect_stored(state.state_details.flow_run_id)
    assert f"secret/{name}" in stored and gcs_server.url not in stored


def test_gcp_credentials_map_to_gcsfs_token_and_project(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from prefect_gcp import GcpCredentials

    from keras_export.blocks import block_options

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    info = {
        "type": "service_account",
        "project_id": "ml-registry",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": "exporter@ml-registry.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    options = block_options(GcpCredentials(service_account_info=info, project="ml-registry"))
    assert options == {"token": info, "project": "ml-registry"}
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    from_file = block_options(GcpCredentials(service_account_file=key_file))
    assert from_file == {"token": str(key_file), "project": "ml-registry"}  # read from the file


def test_secret_in_storage_options_is_used_redacted_and_warned_once(
    prefect_api, s3_server, tmp_path
):
    from keras_export.flows import export_keras_model

    secret = new_secret()
    options = s3_server.storage_options(secret=secret)
    bucket, fs, _ = bucket_with_model(options, "s3", tmp_path)
    state = export_keras_model(
        model=f"s3://{bucket}/src/model.keras",
        destination=f"s3://{bucket}/registry",
        storage_options=options,
        return_state=True,
    )
    assert_secret_nowhere(secret, state, fs, bucket)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    assert run.parameters["storage_options"]["secret"] == "***redacted***"
    assert run.parameters["storage_options"]["endpoint_url"] == s3_server.url
    warnings = [log.message for log in logs if "redacted" in log.message]
    assert len(warnings) == 1 and "block" in warnings[0]


def test_wrong_secret_in_a_block_fails_naming_the_block_and_writes_nothing(
    prefect_api, auth_s3, tmp_path
):
    from export_core import ExportError
    from keras_export.flows import export_keras_model

    secret = new_secret()
    name = f"wrong-{uuid.uuid4().hex[:8]}"
    aws_block(auth_s3.url, secret, key="AKIAWRONGKEY").save(name)
    model = models.functional_regressor()
    model.save(tmp_path / "model.keras")
    state = export_keras_model(
        model=str(tmp_path / "model.keras"),
        destination="s3://registry-bucket/churn",
        credentials=f"aws-credentials/{name}",
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(ExportError) as caught:
        state.result()
    message = str(caught.value)
    assert f"aws-credentials/{name}" in message and secret not in message
    assert secret not in everything_prefect_stored(state.state_details.flow_run_id)


def test_missing_block_fails_with_its_name(prefect_api, tmp_path):
    from export_core import ExportValidationError
    from keras_export.flows import export_keras_model

    with pytest.raises(ExportValidationError, match="aws-credentials/no-such-block"):
        export_keras_model(
            model=models.functional_regressor(),
            destination=str(tmp_path / "registry"),
            credentials="aws-credentials/no-such-block",
        )
    assert not (tmp_path / "registry").exists()


def test_a_missing_block_is_refused_before_tensorflow_and_prefect_start(
    prefect_api, tripwire, tmp_path
):
    from prefect.settings import PREFECT_API_URL

    models.functional_regressor().save(tmp_path / "model.keras")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": tripwire}
    command = [CLI, "export", str(tmp_path / "model.keras"), "s3://bucket/registry"]
    command += ["--credentials", "aws-credentials/no-such-block"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert "tripwire" not in run.stderr, run.stderr
    assert run.returncode == 2, run.stderr
    assert "Cannot load credentials block 'aws-credentials/no-such-block'" in run.stderr


def test_unsupported_credentials_list_the_accepted_blocks(prefect_api, tmp_path):
    from prefect.blocks.webhook import Webhook

    from export_core import ExportValidationError
    from keras_export.flows import export_keras_model

    with pytest.raises(ExportValidationError, match="AwsCredentials or MinIOCredentials"):
        export_keras_model(
            model=models.functional_regressor(),
            destination=str(tmp_path / "registry"),
            credentials=Webhook(url="http://127.0.0.1:9/hook"),
        )


def test_cli_takes_a_block_name_and_global_options_after_the_command(
    prefect_api, s3_server, tmp_path
):
    from prefect.settings import PREFECT_API_URL

    secret = new_secret()
    bucket, fs, model = bucket_with_model(s3_server.storage_options(secret=secret), "s3", tmp_path)
    name = f"cli-{uuid.uuid4().hex[:8]}"
    aws_block(s3_server.url, secret).save(name)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [CLI, "export", f"s3://{bucket}/src/model.keras", f"s3://{bucket}/registry"]
    command += ["--credentials", f"aws-credentials/{name}", "--json"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert secret not in run.stdout + run.stderr
    version = json.loads(run.stdout)["version"]
    listing = subprocess.run(
        [CLI, "versions", f"s3://{bucket}/registry", "--credentials", f"aws-credentials/{name}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert str(version) in listing.stdout and secret not in listing.stdout + listing.stderr
    assert_serves_like(model, fs, bucket, version, tmp_path)
