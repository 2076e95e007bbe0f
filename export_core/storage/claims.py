"""Version claims: how concurrent exports get distinct integer versions.

A claim is a create-if-absent operation: ``mkdir`` of the version folder on local
disk; elsewhere a ``.claims/<version>`` marker written with ``If-None-Match`` (S3)
or ``ifGenerationMatch=0`` (GCS), recording when it was made and for which build
(``backend.claim_record``), so that ``retention.sweep_staging`` can tell an
abandoned claim from a live one. ``publish`` releases a claim once the version's
manifest is written.
"""

from __future__ import annotations

import os
import time

from export_core.errors import StorageError
from export_core.storage.backend import Destination, create_if_absent, quiet_rm
from export_core.storage.names import CLAIMS_DIR, INT64_MAX, claim_record


def claim_version(dest: Destination, start: int | None = None, build_id: str | None = None) -> int:
    """Claims the first free integer version >= ``start``.

    The default start is now, in seconds, or one above the newest version folder
    when that is higher. Never reaching below the newest matters when writers
    publish faster than once a second while retention runs: a number that was
    published and pruned would otherwise be free again, and a retention run still
    removing the old folder could take the new export's files with it (and TF
    Serving would not take a version below its latest as new anyway).

    Claims are create-if-absent operations, so concurrent exports never share a
    version; a taken integer moves on to the next one at once (no sleeping).

    Raises:
        StorageError: No free version was found in 10,000 tries.
    """
    version = _default_start(dest) if start is None else start
    for _ in range(10_000):
        if version > INT64_MAX:
            raise StorageError(
                f"No version is left under '{dest.uri}': {version} is past the largest "
                "int64, the last number TensorFlow Serving loads. Start a new base."
            )
        if _try_claim(dest, version, build_id):
            return version
        version += 1
    raise StorageError(f"Could not claim a free version folder under '{dest.uri}'.")


def _default_start(dest: Destination) -> int:
    dest.fs.invalidate_cache(dest.path)  # other writers add versions: list afresh
    return max([int(time.time()), *(v + 1 for v in dest.versions())])


def _try_claim(dest: Destination, version: int, build_id: str | None = None) -> bool:
    target = dest.join(str(version))
    if dest.is_local:
        try:
            os.mkdir(target)
        except FileExistsError:
            return False
        return True
    if dest.fs.exists(target):
        return False
    # The marker records when it was made: sweep_staging removes only old ones.
    marker = dest.join(CLAIMS_DIR, str(version))
    if not create_if_absent(dest.fs, marker, claim_record(version, build_id=build_id)):
        return False
    return not dest.fs.exists(target)


def release_claim(dest: Destination, version: int) -> None:
    """Removes the claim marker of ``version`` (best effort; a sweep takes a leftover)."""
    quiet_rm(dest.fs, [claim_marker(dest, version)])


def claim_marker(dest: Destination, version: int) -> str:
    return dest.join(CLAIMS_DIR, str(version))
