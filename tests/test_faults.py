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


class FlakyFileSystem(MemoryFileSystem):
    protocol = ("flaky",)
    root_marker = "/"
    fail_put_after: int | None = None
    fail_copy_after: int | None = None
    puts = copies = 0

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, str) and path.startswith("flaky://"):
            path = path[len("flaky://") :]
        return MemoryFileSystem._strip_protocol(path)

    @classmethod
    def reset(cls, put: int | None = None, copy: int | None = None) -> None:
        cls.fail_put_after, cls.fail_copy_after, cls.puts, cls.copies = put, copy, 0, 0

    def put_file(self, lpath, rpath, *args, **kwargs):
        type(self).puts += 1
        if self.fail_put_after is not None and self.puts > self.fail_put_after:
            raise ConnectionResetError("connection reset by peer (injected)")
        return super().put_file(lpath, rpath, *args, **kwargs)

    def cp_file(self, path1, path2, **kwargs):
        type(self).copies += 1
        if self.fail_copy_after is not None and self.copies > self.fail_copy_after:
            raise ConnectionResetError("server went away (injected)")
        return super().cp_file(path1, path2, **kwargs)


@pytest.fixture
def flaky():
    fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)
    FlakyFileSystem.store.clear()
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
