"""Faults part-way through publishing: nothing half-written becomes visible, re-runs work.

The faulty backend is a real fsspec filesystem (fsspec's in-memory one) registered
under its own protocol, whose writes start failing after a set number of files.
"""

from __future__ import annotations

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

import export_core
import export_core.storage
from tests import models
from tests.helpers import ROOT, build_locally


class FlakyFileSystem(MemoryFileSystem):
    protocol = ("flaky",)
    root_marker = "/"
    fail_put_after: int | None = None
    fail_copy_after: int | None = None
    corrupt_data = False  # flip one byte of every checkpoint shard it stores
    fail_rm = False  # every delete fails (a store that refuses deletes)
    puts = copies = 0

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, str) and path.startswith("flaky://"):
            path = path[len("flaky://") :]
        return MemoryFileSystem._strip_protocol(path)

    @classmethod
    def reset(
        cls, put: int | None = None, copy: int | None = None, corrupt=False, rm=False
    ) -> None:
        cls.fail_put_after, cls.fail_copy_after, cls.puts, cls.copies = put, copy, 0, 0
        cls.corrupt_data, cls.fail_rm = corrupt, rm

    def put_file(self, lpath, rpath, *args, **kwargs):
        type(self).puts += 1
        if self.fail_put_after is not None and self.puts > self.fail_put_after:
            raise ConnectionResetError("connection reset by peer (injected)")
        if self.corrupt_data and ".data-" in rpath:
            data = bytearray(open(lpath, "rb").read())
            data[len(data) // 2] ^= 0x01  # silent corruption in transit
            return self.pipe_file(rpath, bytes(data))
        return super().put_file(lpath, rpath, *args, **kwargs)

    def rm(self, path, *args, **kwargs):
        if self.fail_rm and "/registry/1" in str(path):
            raise PermissionError("AccessDenied: deletes are not allowed (injected)")
        return super().rm(path, *args, **kwargs)

    def cp_file(self, path1, path2, **kwargs):
        type(self).copies += 1
        if self.fail_copy_after is not None and self.copies > self.fail_copy_after:
            raise ConnectionResetError("server went away (injected)")
        return super().cp_file(path1, path2, **kwargs)


@pytest.fixture
def flaky():
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    FlakyFileSystem.store.clear()
    FlakyFileSystem.pseudo_dirs[:] = [""]  # folders left by an earlier test
    FlakyFileSystem.reset()
    yield FlakyFileSystem
    FlakyFileSystem.reset()


@pytest.mark.parametrize("fault", [{"put": 2}, {"copy": 1}, {"copy": 3}])
def test_fault_part_way_publishes_nothing_and_a_rerun_succeeds(flaky, fault):
    fs = fsspec.filesystem("flaky")
    fs.pipe("/registry/1000/saved_model.pb", b"existing version")
    model = models.functional_regressor()
    flaky.reset(**fault)
    with pytest.raises(export_core.StorageError, match="injected"):
        export_core.export_saved_model(model, "flaky://registry")
    # Only objects count on object stores (an empty "folder" is not a thing there).
    assert fs.find("/registry") == ["/registry/1000/saved_model.pb"], "nothing else remains"
    assert fs.cat("/registry/1000/saved_model.pb") == b"existing version"
    flaky.reset()
    path = export_core.export_saved_model(model, "flaky://registry")
    version = path.rsplit("/", 1)[-1]
    versions = {p.split("/")[2] for p in fs.find("/registry")}
    assert versions == {"1000", version}
    assert fs.exists(f"/registry/{version}/export_manifest.json")


def test_retention_failing_after_publish_is_a_warning_not_a_failure(flaky):
    fs = fsspec.filesystem("flaky")
    for version in (1000, 1001):
        fs.pipe(f"/registry/{version}/saved_model.pb", b"old")
        fs.pipe(f"/registry/{version}/export_manifest.json", b"{}")
    flaky.reset(rm=True)
    result = export_core.run_export(
        models.functional_regressor(), "flaky://registry", keep_versions=1
    )
    assert fs.exists(f"/registry/{result.version}/export_manifest.json"), "published"
    assert len(result.warnings) == 1 and "retention failed" in result.warnings[0]
    assert "AccessDenied" in result.warnings[0]


def test_a_retried_publish_of_the_same_build_returns_its_version(flaky):
    from export_core import storage
    from export_core.steps import publish
    from export_core.steps.validate import validate_export

    model = models.functional_regressor()
    first = export_core.run_export(model, "flaky://registry", build_id="build-42")
    fs = fsspec.filesystem("flaky")
    assert b'"build_id": "build-42"' in fs.cat(f"/registry/{first.version}/export_manifest.json")
    plan = validate_export(model, "flaky://registry")
    dest = storage.Destination.parse("flaky://registry")
    again = publish.publish_version(
        "/nonexistent-build", None, plan, None, None, build_id="build-42", retried=True
    )
    assert again.reused and again.published.version == first.version
    assert storage.Destination.parse("flaky://registry").versions() == [first.version]
    assert publish.find_published_build(dest, "another-build") is None


def test_bytes_corrupted_in_transit_are_caught_and_nothing_is_published(flaky):
    fs = fsspec.filesystem("flaky")
    fs.pipe("/registry/1000/saved_model.pb", b"existing version")
    flaky.reset(corrupt=True)
    with pytest.raises(export_core.VerificationError, match="variables.data-.*differs"):
        export_core.export_saved_model(models.functional_regressor(), "flaky://registry")
    assert fs.find("/registry") == ["/registry/1000/saved_model.pb"], "nothing else remains"


def test_credentials_never_appear_in_errors(flaky, caplog):
    secret = "SUPERSECRET-abc123"
    flaky.reset(put=0)
    with pytest.raises(export_core.StorageError) as info:
        export_core.run_export(
            models.functional_regressor(),
            "flaky://registry",
            storage_options={"skip_instance_cache": True},
            source={"uri": f"s3://bucket/m.keras?secret={secret}"},
        )
    assert secret not in str(info.value) and secret not in caplog.text
    assert export_core.storage.safe_message(ValueError(f"key={secret}")) == "key=***"


def test_s3_server_dying_mid_upload_publishes_nothing_and_a_rerun_succeeds(s3_server):
    import uuid

    from export_core.steps import publish
    from tests.servers import FaultyProxy

    proxy = FaultyProxy(s3_server.port).start()
    try:
        options = {
            **s3_server.storage_options(),
            "endpoint_url": proxy.url,
            "config_kwargs": {"connect_timeout": 2, "retries": {"max_attempts": 1}},
        }
        fsspec.AbstractFileSystem.clear_instance_cache()
        bucket = f"b{uuid.uuid4().hex[:12]}"
        fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", **options)
        fs.mkdir(bucket)
        fs.pipe(f"{bucket}/registry/1000/saved_model.pb", b"existing version")
        base = f"s3://{bucket}/registry"
        model = models.functional_regressor()
        plan, dest, build_dir = build_locally(model, base, options)
        uploaded = []

        def die_after_first_file(done: int, total: int) -> None:
            uploaded.append(done)
            proxy.cut()

        try:
            with pytest.raises(export_core.StorageError, match="Uploading to"):
                publish.stage_build(build_dir, plan, None, die_after_first_file)
        finally:
            export_core.storage.remove_build_dir(build_dir)
        assert len(uploaded) == 1, "the link died part-way through the upload"
        proxy.restore()
        fs.invalidate_cache()
        leftovers = [p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/registry", detail=False)]
        assert [n for n in leftovers if n.isdigit()] == ["1000"], "no new integer version"
        assert all(n in ("1000", ".claims") for n in leftovers), leftovers
        assert fs.cat(f"{bucket}/registry/1000/saved_model.pb") == b"existing version"
        export_core.storage.sweep_staging(dest, older_than=0)  # the export is known dead
        assert pending_uploads(fs, bucket) == [], "the sweep aborted the dead export's uploads"
        path = export_core.export_saved_model(model, base, storage_options=options)
        fs.invalidate_cache()
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/registry", detail=False))
        assert names == ["1000", path.rsplit("/", 1)[-1]]
    finally:
        proxy.stop()


def pending_uploads(fs, bucket: str) -> list[str]:
    """Keys of the multipart uploads S3 still holds open in ``bucket``."""
    return [
        u["Key"] for u in fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    ]


KILLED_EXPORT = """
import json, os, signal, sys
import export_core
from export_core.steps import publish
from tests import models
from tests.helpers import build_locally

model = models.functional_regressor()
plan, dest, build_dir = build_locally(model, sys.argv[1], json.loads(sys.argv[2]))
draft, staging = publish.stage_build(build_dir, plan)
parity = publish.verify_build(build_dir, model, plan)
os.kill(os.getpid(), signal.SIGKILL)  # interrupted between verify-reload and publish
"""


@pytest.mark.parametrize("backend_name", ["local", "s3"])
def test_process_killed_between_steps_leaves_no_version_and_rerun_succeeds(
    request, tmp_path, backend_name
):
    import json
    import os
    import subprocess
    import sys
    import uuid

    if backend_name == "local":
        uri, options = str(tmp_path / "registry"), {}
    else:
        server = request.getfixturevalue("s3_server")
        uri, options = f"s3://b{uuid.uuid4().hex[:12]}/registry", server.storage_options()
    fsspec.AbstractFileSystem.clear_instance_cache()
    fs, base = fsspec.core.url_to_fs(uri, **options)
    if backend_name == "s3":
        fs.mkdir(base.split("/")[0])
    fs.makedirs(f"{base}/1000", exist_ok=True)
    fs.pipe(f"{base}/1000/saved_model.pb", b"existing version")

    root = ROOT
    env = dict(os.environ, PYTHONPATH=root)
    args = [sys.executable, "-c", KILLED_EXPORT, uri, json.dumps(options)]
    assert subprocess.run(args, env=env, cwd=root).returncode == -9, "the export was killed"

    fs.invalidate_cache()
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)]
    assert [n for n in names if n.isdigit()] == ["1000"], "no new integer version"
    # S3 builds wait as pending uploads in a claimed version; elsewhere in staging.
    assert all(n in ("1000", ".claims") or n.startswith(".staging-") for n in names), names
    assert fs.cat(f"{base}/1000/saved_model.pb") == b"existing version"
    dest = export_core.storage.Destination.parse(uri, options)
    bucket = base.split("/")[0]
    if backend_name == "s3":
        assert pending_uploads(fs, bucket), "the killed export's uploads are still open"
    if backend_name == "local":  # its name records this host and the dead process
        assert export_core.storage.sweep_staging(dest), "a dead process's build is swept at once"
    else:
        assert not export_core.storage.sweep_staging(dest), "fresh staging may still be in use"
        assert export_core.storage.sweep_staging(dest, older_than=0), "swept once known dead"
    if backend_name == "s3":
        assert pending_uploads(fs, bucket) == [], "the sweep aborted them"
    path = export_core.export_saved_model(
        models.functional_regressor(), uri, storage_options=options
    )
    fs.invalidate_cache()
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))
    assert names == ["1000", path.rstrip("/").rsplit("/", 1)[-1]]
