"""Bad destinations fail fast (in validate, before tracing) with errors that say why."""

from __future__ import annotations

import logging

import fsspec
import pytest

import export_core
from tests import models
from tests.servers import free_port

SECRET = "SUPERSECRET/abc+123"


@pytest.fixture(autouse=True)
def _fresh_filesystems():
    fsspec.AbstractFileSystem.clear_instance_cache()


def export_to(uri: str, options: dict):
    return export_core.export_saved_model(
        models.functional_regressor(), uri, storage_options=options
    )


def test_wrong_credentials_are_named_and_never_echoed(auth_s3, caplog):
    options = {"key": "AKIAWRONGKEY", "secret": SECRET, "endpoint_url": auth_s3.url}
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(
            export_core.StorageError, match="access was denied: check the credentials"
        ) as info,
    ):
        export_to("s3://registry/models/m", options)
    assert SECRET not in str(info.value) and SECRET not in caplog.text


def test_unreachable_s3_endpoint_is_named(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    options = {
        "key": "k",
        "secret": SECRET,
        "endpoint_url": dead,
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    with pytest.raises(export_core.StorageError, match="cannot be reached.*endpoint_url"):
        export_to("s3://registry/models/m", options)


def test_unreachable_gcs_endpoint_is_named():
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(export_core.StorageError, match="cannot be reached"):
        export_to("gs://registry/models/m", {"token": "anon", "endpoint_url": dead})


@pytest.mark.parametrize("server_name", ["s3_server", "gcs_server"])
def test_missing_bucket_fails_before_any_work(request, server_name):
    server = request.getfixturevalue(server_name)
    scheme = "s3" if server_name == "s3_server" else "gs"
    with pytest.raises(export_core.StorageError, match="Bucket 'no-such-bucket' .* does not exist"):
        export_to(f"{scheme}://no-such-bucket/models/m", server.storage_options())
