"""The publishing contract, run against local disk, memory, an S3 server and a GCS server."""

from __future__ import annotations

import os
import threading

import pytest
from numpy.testing import assert_allclose

import export_core
from export_core import storage
from tests import models


def download(backend, uri: str, target) -> str:
    if backend.name == "local":
        return uri
    fs_path = backend.fs._strip_protocol(uri)
    files = backend.fs.find(fs_path)
    local = [os.path.join(target, f[len(fs_path) :].lstrip("/")) for f in files]
    backend.fs.get(files, local)
    return str(target)


def test_export_publishes_one_complete_version_and_no_leftovers(backend, tmp_path):
    model = models.functional_regressor()
    path = export_core.export_saved_model(model, backend.base, storage_options=backend.options)
    version = path.rstrip("/").rsplit("/", 1)[-1]
    assert version.isdigit()
    assert backend.listing() == [version], "no staging prefix or claim marker remains"
    files = set(backend.listing(f"{backend.path}/{version}"))
    assert {"saved_model.pb", "variables", "assets"} <= files
    x, _ = models.regression_batch()
    local = download(backend, path, tmp_path / "download")
    served = models.tf1_predict(local, {"features": x})["prediction"]
    assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)
    loaded = export_core.load_from_saved_model(path, storage_options=backend.options)
    assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_concurrent_claims_get_distinct_versions(backend):
    dest = storage.Destination.parse(backend.base, backend.options)
    if backend.name == "local":
        os.makedirs(dest.path, exist_ok=True)
    claimed: list[int] = []
    barrier = threading.Barrier(6)

    def claim():
        barrier.wait()
        claimed.append(storage.claim_version(dest, start=1_700_000_000))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == list(range(1_700_000_000, 1_700_000_006))


def test_claim_skips_versions_that_already_exist(backend):
    dest = storage.Destination.parse(backend.base, backend.options)
    backend.fs.makedirs(f"{backend.path}/1700000000", exist_ok=True)
    backend.fs.pipe(f"{backend.path}/1700000000/saved_model.pb", b"existing")
    assert storage.claim_version(dest, start=1_700_000_000) == 1_700_000_001
    assert backend.fs.cat(f"{backend.path}/1700000000/saved_model.pb") == b"existing"


def test_non_timestamped_refuses_non_empty_target(backend):
    target = f"{backend.base}/fixed"
    backend.fs.makedirs(f"{backend.path}/fixed", exist_ok=True)
    backend.fs.pipe(f"{backend.path}/fixed/keep.txt", b"precious")
    with pytest.raises(export_core.VersionExistsError, match="not empty"):
        export_core.export_saved_model(
            models.functional_regressor(),
            target,
            timestamped=False,
            storage_options=backend.options,
        )
    assert backend.listing(f"{backend.path}/fixed") == ["keep.txt"]
    assert backend.fs.cat(f"{backend.path}/fixed/keep.txt") == b"precious"


def test_non_timestamped_writes_into_an_empty_target(backend, tmp_path):
    target = f"{backend.base}/fixed"
    model = models.functional_regressor()
    path = export_core.export_saved_model(
        model, target, timestamped=False, storage_options=backend.options
    )
    assert path == target
    x, _ = models.regression_batch()
    local = download(backend, path, tmp_path / "download")
    assert_allclose(
        models.tf1_predict(local, {"features": x})["prediction"],
        model.predict(x, verbose=0),
        atol=1e-5,
    )


def test_failed_verification_leaves_no_version_and_no_staging(backend):
    import keras

    from tests.models import EagerOnlyScale

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, EagerOnlyScale()(inputs))
    with pytest.raises(export_core.VerificationError):
        export_core.export_saved_model(
            model, backend.base, serving_only=True, storage_options=backend.options
        )
    assert [n for n in backend.listing() if n != ".claims"] == []


def test_missing_bucket_is_a_clear_storage_error(backend):
    if backend.name in ("local", "memory"):
        pytest.skip("local disk and memory have no buckets: folders are created on demand")
    base = backend.base.replace(backend.path.split("/")[0], "no-such-bucket-" + backend.name)
    with pytest.raises(export_core.StorageError, match="no-such-bucket"):
        export_core.export_saved_model(
            models.functional_regressor(), base, storage_options=backend.options
        )


def test_four_concurrent_exports_get_four_complete_versions(backend):
    model = models.functional_regressor()
    model.predict(models.regression_batch()[0], verbose=0)
    paths: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def export():
        barrier.wait()
        try:
            paths.append(
                export_core.export_saved_model(model, backend.base, storage_options=backend.options)
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=export) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    versions = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in paths)
    assert len(set(versions)) == 4
    backend.fs.invalidate_cache()
    assert backend.listing() == versions, "exactly the four versions, no leftovers"
    for version in versions:
        files = set(backend.listing(f"{backend.path}/{version}"))
        assert {"saved_model.pb", "export_manifest.json", "variables", "assets"} <= files


LANDED_CHECK = {"memory": "sha256", "s3": "etag", "gcs": "md5"}


def _stage_a_build(backend, tmp_path):
    """Stages into a non-timestamped target: the staging-prefix route on every store
    (timestamped builds go straight into their version on S3, see test_direct_upload)."""
    build = tmp_path / "build"
    (build / "variables").mkdir(parents=True)
    (build / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(300_000))
    (build / "saved_model.pb").write_bytes(b"proto bytes")
    dest = storage.Destination.parse(f"{backend.base}/model", backend.options)
    staging = storage.stage(str(build), dest, timestamped=False)
    assert isinstance(staging, str), staging
    expected = {
        rel: {"size": os.path.getsize(build / rel)}
        for rel in ("saved_model.pb", "variables/variables.data-00000-of-00001")
    }
    return str(build), dest, staging, expected


def test_landed_bytes_are_confirmed_with_the_stores_own_checksum(backend, tmp_path):
    if backend.name == "local":
        pytest.skip("local builds are renamed into place, never uploaded")
    build, dest, staging, expected = _stage_a_build(backend, tmp_path)
    methods = storage.confirm_landed(dest, build, staging, expected)
    assert set(methods.values()) == {LANDED_CHECK[backend.name]}, methods


def test_an_object_changed_after_upload_is_caught(backend, tmp_path):
    if backend.name == "local":
        pytest.skip("local builds are renamed into place, never uploaded")
    build, dest, staging, expected = _stage_a_build(backend, tmp_path)
    rel = "variables/variables.data-00000-of-00001"
    data = bytearray(open(os.path.join(build, rel), "rb").read())
    data[1234] ^= 0xFF  # same size, one byte differs
    dest.fs.pipe(f"{staging}/{rel}", bytes(data))
    with pytest.raises(export_core.VerificationError, match="differs from the build"):
        storage.confirm_landed(dest, build, staging, expected)
    dest.fs.rm(f"{staging}/saved_model.pb")
    with pytest.raises(export_core.VerificationError, match="missing \\['saved_model.pb'\\]"):
        storage.confirm_landed(dest, build, staging, expected)


def test_s3_etag_is_predicted_for_plain_and_multipart_uploads(s3_server, tmp_path):
    """Files from 2 parts up go as a multipart upload; their ETag hashes the part MD5s."""
    import fsspec

    fs, _ = fsspec.core.url_to_fs("s3://etags", **s3_server.storage_options())
    if not fs.exists("etags"):
        fs.mkdir("etags")
    for size in (1_000, 2 * storage.S3_PART_SIZE + 7):
        local = tmp_path / f"f{size}"
        with open(local, "wb") as handle:
            handle.truncate(size)  # zeros are fine: the formula is what is checked
        storage._put_file(fs, str(local), f"etags/f{size}")
        reported = fs.info(f"etags/f{size}")["ETag"].strip('"')
        assert reported == storage.s3_etag(str(local), size)
        assert reported.endswith("-3") == (size > storage.S3_PART_SIZE)
