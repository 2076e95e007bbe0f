"""S3 builds go straight into their claimed version, invisible until they are verified.

Against moto's S3 server (through a recording proxy where bytes are counted): a
staged build is a set of pending multipart uploads that no listing shows; publish
completes them, ``saved_model.pb`` after the rest, and sends each byte once with no
server-side copy; a failed or killed export leaves nothing a sweep does not remove.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
import zlib

import fsspec
import numpy as np
import pytest

import export_core
from export_core import storage
from export_core.storage import direct, multipart
from tests import models
from tests.helpers import names

SHARD = "variables/variables.data-00000-of-00001"


@pytest.fixture
def proxy(s3_server):
    from tests.servers import RecordingProxy

    proxy = RecordingProxy(s3_server.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def base(s3_server, proxy):
    options = {**s3_server.storage_options(), "endpoint_url": proxy.url}
    fsspec.AbstractFileSystem.clear_instance_cache()
    bucket = f"d{uuid.uuid4().hex[:12]}"
    fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", **options)
    fs.mkdir(bucket)
    return f"s3://{bucket}/registry", options, fs, bucket


def fake_build(tmp_path, shard_bytes: int = 2 * multipart.PART_SIZE + 12345) -> str:
    build = tmp_path / "build"
    (build / "variables").mkdir(parents=True)
    rng = np.random.default_rng(0)
    (build / SHARD).write_bytes(rng.bytes(shard_bytes))
    (build / "variables" / "variables.index").write_bytes(b"index")
    (build / "saved_model.pb").write_bytes(b"proto")
    return str(build)


def pending(fs, bucket: str) -> list[str]:
    listed = fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    return sorted(u["Key"] for u in listed)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_staged_build_is_invisible_until_publish_completes_it(base, tmp_path):
    uri, options, fs, bucket = base
    build = fake_build(tmp_path)
    dest = storage.Destination.parse(uri, options)
    staged = storage.stage(build, dest, timestamped=True, build_id="b1")
    assert isinstance(staged, direct.DirectStage)
    assert names(fs, f"{bucket}/registry") == [".claims"], "no version folder to see"
    assert dest.versions() == []
    assert pending(fs, bucket) == sorted(
        f"registry/{staged.version}/{rel}" for rel in storage.ordered_files(build)
    )
    assert fs.cat(f"{bucket}/registry/.claims/{staged.version}")  # the claim, for gc
    published = storage.publish(build, dest, True, staged, "b1")
    assert published.version == staged.version
    for rel in storage.ordered_files(build):
        landed = fs.cat(f"{bucket}/registry/{staged.version}/{rel}")
        assert sha(landed) == sha(open(os.path.join(build, rel), "rb").read()), rel
    assert pending(fs, bucket) == [], "every upload completed"
    assert names(fs, f"{bucket}/registry") == [str(staged.version)], "the claim is released"
    storage.cleanup(build, dest, staged)  # after a publish: nothing left to undo
    assert names(fs, f"{bucket}/registry/{staged.version}") == ["saved_model.pb", "variables"]


def test_an_s3_export_sends_each_byte_once_and_copies_nothing(base, proxy):
    uri, options, fs, bucket = base
    model = models.functional_regressor()
    proxy.reset()
    result = export_core.run_export(model, uri, storage_options=options)
    files = fs.find(f"{bucket}/registry/{result.version}", detail=True)
    size = sum(int(info["size"]) for info in files.values())
    assert proxy.copies == 0, "no server-side copy: the build went into its final keys"
    assert size <= proxy.bytes_sent <= size + 200_000, (size, proxy.bytes_sent)  # + headers
    proxy.reset()  # the detector works: a non-timestamped export stages and copies
    export_core.run_export(model, f"{uri}-fixed", storage_options=options, timestamped=False)
    assert proxy.copies >= 3


def test_a_sharded_checkpoint_lands_whole_on_s3(base, tmp_path, monkeypatch):
    from export_core import constants

    uri, options, fs, bucket = base
    model = models.functional_regressor()
    x, _ = models.regression_batch()
    expected = model.predict(x, verbose=0)
    monkeypatch.setattr(constants, "SHARD_BYTES", 64)  # every variable a shard or more
    result = export_core.run_export(model, uri, storage_options=options)
    version = f"{bucket}/registry/{result.version}"
    data = [p for p in fs.find(version) if "variables.data-" in p]
    assert len(data) > 4, data
    assert pending(fs, bucket) == []
    fs.get(version, str(tmp_path / "copy"), recursive=True)
    got = models.tf1_predict(str(tmp_path / "copy"), {"features": x})["prediction"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_failed_verification_aborts_the_uploads_and_releases_the_claim(base):
    import keras

    from tests.models import EagerOnlyScale

    uri, options, fs, bucket = base
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, EagerOnlyScale()(inputs))  # its graph differs from eager
    with pytest.raises(export_core.VerificationError):
        export_core.run_export(model, uri, serving_only=True, storage_options=options)
    assert names(fs, f"{bucket}/registry") == [], "no version, no claim"
    assert pending(fs, bucket) == [], "no upload left open"


def staged_build(base, tmp_path, rel: str):
    """A fake build staged into its S3 version; also the pending upload of ``rel``."""
    uri, options, _fs, _bucket = base
    build = fake_build(tmp_path)
    dest = storage.Destination.parse(uri, options)
    staged = storage.stage(build, dest, timestamped=True)
    return build, dest, staged, next(u for u in staged.uploads if u.rel == rel)


def test_a_part_changed_after_upload_never_reaches_the_version(base, tmp_path):
    _uri, _options, fs, bucket = base
    build, dest, staged, shard = staged_build(base, tmp_path, SHARD)
    assert len(shard.parts) == 3
    key = f"registry/{staged.version}/{SHARD}"
    fs.call_s3(  # someone else's bytes over part 2 of the pending upload
        "upload_part",
        Bucket=bucket,
        Key=key,
        UploadId=shard.upload_id,
        PartNumber=2,
        Body=b"\0" * multipart.PART_SIZE,
    )
    storage.publish(build, dest, True, staged)
    landed = fs.cat(f"{bucket}/{key}")
    assert sha(landed) == sha(open(os.path.join(build, SHARD), "rb").read())


def test_a_retried_publish_uploads_again_what_a_failed_attempt_lost(base, tmp_path):
    _uri, _options, fs, bucket = base
    build, dest, staged, index = staged_build(base, tmp_path, "variables/variables.index")
    key = f"registry/{staged.version}/variables/variables.index"
    fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=index.upload_id)
    published = storage.publish(build, dest, True, staged)
    assert fs.cat(f"{bucket}/{key}") == b"index"
    assert published.version == staged.version


def test_a_sweep_undoes_an_export_that_died_between_stage_and_publish(base, tmp_path):
    _uri, _options, fs, bucket = base
    build, dest, staged, shard = staged_build(base, tmp_path, SHARD)
    # It died half-way through completing: the shard is visible, the proto is not.
    direct._complete_one(dest, build, staged.target, shard)
    assert names(fs, f"{bucket}/registry") == [".claims", str(staged.version)]
    assert storage.sweep_staging(dest) == [], "a fresh claim may be a live export"
    assert storage.sweep_staging(dest, older_than=0) == [f".claims/{staged.version}"]
    assert names(fs, f"{bucket}/registry") == [], "no half version, no claim"
    assert pending(fs, bucket) == []


def test_a_kms_part_is_confirmed_by_its_crc32_and_a_wrong_part_is_refused():
    body = b"some part bytes"
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    md5 = hashlib.md5(body).hexdigest()  # noqa: S324
    assert multipart.part_digest({"ETag": f'"{md5}"'}, body, "f", 1) == md5
    kms = {"ETag": '"0123abcd"', "ServerSideEncryption": "aws:kms", "ChecksumCRC32": crc}
    assert multipart.part_digest(kms, body, "f", 1) is None
    with pytest.raises(export_core.VerificationError, match="Part 1 of f"):
        multipart.part_digest({**kms, "ChecksumCRC32": "AAAAAA=="}, body, "f", 1)
    with pytest.raises(export_core.VerificationError, match="Part 2 of f"):
        multipart.part_digest({"ETag": '"0123abcd"', "ChecksumCRC32": crc}, body, "f", 2)
