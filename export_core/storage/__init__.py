"""Destinations: one fsspec filesystem per export, version claims, publishing, retention.

Everything goes through ``fsspec.core.url_to_fs(uri, **storage_options)``. The
package keeps the import path of the former ``storage.py``; by concern:

* ``backend``: ``Destination`` (parsing, reachability, preconditions), the names
  staging folders and claims carry, create-if-absent, error wrapping;
* ``transfer``: uploads, checking what landed, downloads, progress;
* ``claims``: version claims (create-if-absent), so concurrent exports never share one;
* ``publish``: build and staging folders, making a version visible;
* ``direct``: on S3, uploading a build into its claimed version, completed only
  once verified;
* ``retention``: pruning old versions, sweeping abandoned staging and claims,
  safe with any number of concurrent writers and retention runs;
* ``kept``: why retention keeps each version (newest, labelled, a rollback target...).
"""

from __future__ import annotations

from export_core.errors import safe_message
from export_core.storage.backend import (
    BACKEND_HINTS,
    LAST_FILES,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Destination,
    create_if_absent,
    is_local_uri,
    storage_error,
)
from export_core.storage.claims import claim_version
from export_core.storage.names import (
    CLAIMS_DIR,
    STAGING_PREFIX,
    claim_created,
    claim_record,
    new_staging_name,
    staging_created,
)
from export_core.storage.publish import (
    Published,
    Seal,
    Staged,
    cleanup,
    cleanup_staging,
    confirm_staged,
    new_build_dir,
    ordered_files,
    publish,
    remove_build_dir,
    stage,
)
from export_core.storage.retention import (
    STALE_AFTER,
    Collected,
    collect_garbage,
    prune_versions,
    retention_plan,
    sweep_staging,
)
from export_core.storage.transfer import (
    HASH_CHUNK,
    S3_PART_SIZE,
    ProgressFn,
    confirm_landed,
    local_copy,
    progress_listener,
    put_file,
    s3_etag,
)

_put_file = put_file  # the former private name, which tests use

__all__ = [
    "BACKEND_HINTS",
    "CLAIMS_DIR",
    "HASH_CHUNK",
    "LAST_FILES",
    "MANIFEST_FILE",
    "S3_PART_SIZE",
    "SIGNATURE_FILE",
    "STAGING_PREFIX",
    "STALE_AFTER",
    "Collected",
    "Destination",
    "ProgressFn",
    "Published",
    "Seal",
    "Staged",
    "claim_created",
    "claim_record",
    "claim_version",
    "cleanup",
    "cleanup_staging",
    "confirm_staged",
    "collect_garbage",
    "confirm_landed",
    "create_if_absent",
    "local_copy",
    "is_local_uri",
    "new_build_dir",
    "new_staging_name",
    "ordered_files",
    "progress_listener",
    "prune_versions",
    "publish",
    "put_file",
    "remove_build_dir",
    "retention_plan",
    "s3_etag",
    "safe_message",
    "stage",
    "staging_created",
    "storage_error",
    "sweep_staging",
]
