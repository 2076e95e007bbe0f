"""S3 multipart uploads, the pieces ``direct`` publishes with.

A multipart upload that is not completed is invisible: no object, no prefix, no
listing shows it. ``send_file`` starts one and sends every part (in parallel,
each read and hashed once off the event loop, each confirmed as it lands);
``complete_upload`` makes the object, ``list_uploads`` and ``abort_upload`` find
and drop the ones an export left open.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from export_core.errors import VerificationError

PART_SIZE = 16 * 2**20  # S3's minimum is 5 MiB; 10,000 parts at most per object
MAX_PARTS = 10_000
PARTS_IN_FLIGHT = 8  # parts read and sent at once: PARTS_IN_FLIGHT * PART_SIZE in memory


@dataclass(frozen=True)
class PendingUpload:
    """One file of the build, uploaded to its final key and not yet completed."""

    rel: str
    upload_id: str
    size: int
    parts: tuple[tuple[int, str], ...]  # (part number, ETag as S3 returned it)
    etag: str | None  # the completed object's ETag, when every part's is an MD5


class UploadStarted(Exception):
    """An upload that failed after S3 gave it an id (so that it can be aborted)."""

    def __init__(self, upload: PendingUpload) -> None:
        super().__init__(upload.rel)
        self.upload = upload


async def send_file(fs: Any, local: str, path: str, rel: str) -> PendingUpload:
    bucket, key, _ = fs.split_path(path)
    size = os.path.getsize(local)
    created = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key)
    upload_id = created["UploadId"]
    part_size = max(PART_SIZE, -(-size // MAX_PARTS))
    numbers = range(1, max(1, -(-size // part_size)) + 1)
    gate = asyncio.Semaphore(PARTS_IN_FLIGHT)

    async def send(number: int) -> tuple[int, str, str | None]:
        async with gate:
            offset = (number - 1) * part_size
            # Read and hashed off the event loop (hashlib releases the GIL).
            body, md5 = await asyncio.to_thread(_read, local, offset, part_size)
            sent = await fs._call_s3(
                "upload_part",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentMD5=base64.b64encode(md5).decode(),  # S3 refuses a part that differs
            )
            return number, sent["ETag"], part_digest(sent, body, rel, number, md5.hex())

    tasks = [asyncio.ensure_future(send(n)) for n in numbers]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException as exc:
        for task in tasks:  # no part goes up after the upload is aborted
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise UploadStarted(PendingUpload(rel, upload_id, size, (), None)) from exc
    parts = tuple((number, etag) for number, etag, _md5 in results)
    md5s = [md5 for _n, _e, md5 in results]
    etag = None
    if all(md5s):
        joined = b"".join(bytes.fromhex(m) for m in md5s)  # type: ignore[arg-type]
        etag = f"{hashlib.md5(joined).hexdigest()}-{len(md5s)}"  # noqa: S324
    return PendingUpload(rel, upload_id, size, parts, etag)


def _read(local: str, offset: int, size: int) -> tuple[bytes, bytes]:
    with open(local, "rb") as handle:
        handle.seek(offset)
        body = handle.read(size)
    return body, hashlib.md5(body).digest()  # noqa: S324 - what S3 reports; integrity only


def part_digest(
    response: Mapping[str, Any], body: bytes, rel: str, number: int, md5: str | None = None
) -> str | None:
    """Confirms one part landed as sent; its MD5 (hex), or None when KMS hides it.

    The part's ETag is the MD5 of the bytes S3 stored unless the object is
    encrypted with SSE-KMS; then the CRC32 checksum S3 computed (and botocore
    asked for) has to match instead.

    Raises:
        VerificationError: Neither matches.
    """
    md5 = md5 or hashlib.md5(body).hexdigest()  # noqa: S324 - what S3 reports
    if str(response.get("ETag") or "").strip('"') == md5:
        return md5
    crc = response.get("ChecksumCRC32")
    local_crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    if str(response.get("ServerSideEncryption") or "").startswith("aws:kms") and crc == local_crc:
        return None
    raise VerificationError(
        f"Part {number} of {rel} landed with ETag {response.get('ETag')} and CRC32 "
        f"{crc}, not the MD5 {md5} / CRC32 {local_crc} of the bytes sent. Nothing was "
        "published."
    )


def complete_upload(fs: Any, path: str, pending: PendingUpload) -> None:
    """Completes ``pending`` into the object at ``path`` (S3 assembles its parts)."""
    bucket, key, _ = fs.split_path(path)
    parts = [{"PartNumber": n, "ETag": etag} for n, etag in pending.parts]
    fs.call_s3(
        "complete_multipart_upload",
        Bucket=bucket,
        Key=key,
        UploadId=pending.upload_id,
        MultipartUpload={"Parts": parts},
    )


def list_uploads(fs: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    found, marker = [], {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **marker)
        found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        if not page.get("IsTruncated"):
            return found
        marker = {
            "KeyMarker": page["NextKeyMarker"],
            "UploadIdMarker": page["NextUploadIdMarker"],
        }


def abort_upload(fs: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception:  # noqa: BLE001 - gone already, or left for the sweep
        pass
