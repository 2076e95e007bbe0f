"""Reading a model registry: versions, manifests, and re-verifying a published version.

Listing needs only fsspec: TensorFlow is imported by ``inspect_saved_model`` and
``verify_saved_model`` alone, so ``keras-export versions`` and ``gc`` start fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from export_core import constants as c
from export_core import storage
from export_core.errors import ExportValidationError, VerificationError
from export_core.registry.where import matches_all, parse_conditions
from export_core.storage.kept import INCOMPLETE
from export_core.storage.label_file import load_document


@dataclass(frozen=True)
class VersionInfo:
    """One integer folder under a base.

    Attributes:
        complete: It holds ``saved_model.pb`` (what TensorFlow Serving looks for).
        verified: It holds a manifest recording a passed verification.
        kept_because: Why retention keeps it (``export_core.storage.kept``: "newest",
            "label:stable", "rollback:stable"...); empty when ``gc`` would remove it.
    """

    version: int
    path: str
    complete: bool
    verified: bool
    created: str | None = None
    source_sha256: str | None = None
    labels: tuple[str, ...] = ()
    metadata: Mapping[str, Any] | None = None
    kept_because: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["kept_because"] = list(self.kept_because)
        return data


def list_versions(
    base: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    missing_ok: bool = False,
    keep: int | None = None,
    where: Iterable[str] | None = None,
) -> list[VersionInfo]:
    """Every integer version under ``base``, oldest first, with its status and why
    retention keeps it: the same answer ``gc`` acts on (``storage.retention_plan``).

    Args:
        keep: Also mark the newest ``keep`` complete versions, as ``gc --keep`` would
            keep them (without it, a version with no reason is one ``gc --keep 1``
            would remove).
        where: Conditions on the recorded metadata that every listed version meets,
            e.g. ``["metadata.auc>=0.9"]`` (``export_core.registry.where``).

    Raises:
        ExportValidationError: ``base`` is not a base of versions (see ``require_base``);
            a base that does not exist yet is an empty list with ``missing_ok``. A
            malformed ``where`` condition, or ``keep`` < 1.
    """
    conditions = parse_conditions(where)  # a malformed one fails before the store is asked
    dest = storage.Destination.parse(base, storage_options)
    dest.check_reachable()
    if missing_ok and not dest.fs.exists(dest.path):
        return []
    require_base(dest, base)
    document = load_document(dest)
    plan = storage.retention_plan(dest, keep, document=document)
    infos = []
    for version, kept in plan.items():
        folder = dest.join(str(version))
        complete = INCOMPLETE not in kept  # the plan listed the folder: no second look
        manifest = _read_manifest(dest, folder)
        metadata = ((manifest or {}).get("lineage") or {}).get("metadata")
        if not matches_all(metadata, conditions):
            continue
        infos.append(
            VersionInfo(
                version=version,
                path=dest.child_uri(str(version)),
                complete=complete,
                verified=bool(manifest and manifest.get("parity")),
                created=(manifest or {}).get("created"),
                source_sha256=((manifest or {}).get("source") or {}).get("sha256"),
                labels=document.labels_of(version),
                metadata=metadata,
                kept_because=kept,
            )
        )
    return infos


def newest_manifest_source(
    base: str, storage_options: Mapping[str, Any] | None = None
) -> dict | None:
    """The ``source`` record of the newest complete version's manifest, if any.

    Reads the newest version's manifest only (older ones when the newest is
    incomplete), so a frequent check costs one listing and one small read.
    """
    dest = storage.Destination.parse(base, storage_options)
    dest.check_reachable()
    dest.fs.invalidate_cache(dest.path)  # other writers publish: list afresh
    if not dest.fs.exists(dest.path):
        return None
    for version in reversed(dest.versions()):
        folder = dest.join(str(version))
        if not any(dest.fs.exists(f"{folder}/{name}") for name in storage.LAST_FILES):
            continue
        manifest = _read_manifest(dest, folder)
        return dict((manifest or {}).get("source") or {}) or None
    return None


def require_base(dest: storage.Destination, base: str) -> None:
    """A version base is an existing folder that is not itself a SavedModel.

    Raises:
        ExportValidationError: Missing, a file, or a version folder given as the base.
    """
    try:
        info = dest.fs.info(dest.path)
    except FileNotFoundError:
        info = None
    if info is None and not dest.fs.exists(dest.path):
        raise ExportValidationError(
            f"{base} does not exist, so it holds no versions. Check the path (exports "
            "create it on their first publish)."
        )
    if info is not None and info.get("type") == "file":
        raise ExportValidationError(f"{base} is a file, not a folder of versions.")
    if any(dest.fs.exists(f"{dest.path}/{name}") for name in storage.LAST_FILES):
        raise ExportValidationError(
            f"{base} is a SavedModel (a version), not a base of versions; pass the folder "
            "that holds the integer version folders (its parent)."
        )


def require_folder(path: str, storage_options: Mapping[str, Any] | None) -> None:
    """A path given as a SavedModel must be an existing folder (exit 2, not 3); on an
    object store its bucket must exist (a missing bucket is not a missing version).

    Raises:
        ExportValidationError: Missing, or a file.
        StorageError: The store cannot be reached, or the bucket does not exist.
    """
    dest = storage.Destination.parse(path, storage_options)
    if dest.is_local:
        if not os.path.isdir(dest.path):
            what = "is a file" if os.path.exists(dest.path) else "does not exist"
            raise ExportValidationError(f"{path} {what}; pass a SavedModel (version) folder.")
        return
    dest.check_reachable()
    if not dest.fs.exists(dest.path):
        raise ExportValidationError(
            f"{path} does not exist; pass a SavedModel (version) folder "
            f"(keras-export versions <base> lists them)."
        )


def require_saved_model(local: str, path: str) -> None:
    """Raises ``ExportValidationError`` unless ``local`` holds a SavedModel proto."""
    if not any(os.path.exists(os.path.join(local, name)) for name in storage.LAST_FILES):
        raise ExportValidationError(
            f"{path} is not a SavedModel: it holds no saved_model.pb. Pass a version folder "
            "(keras-export versions BASE lists them)."
        )


def diff_versions(
    old: str, new: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Compares two versions' serving signatures (``keras-export diff``).

    Returns the ``SignatureDiff`` as a dict when the new one is compatible.

    Raises:
        VerificationError: The new version breaks clients of the old one (the diff).
    """
    from export_core.registry import signature_gate

    signatures = [
        signature_gate.serving_signatures(_meta_graphs(p, storage_options)) for p in (old, new)
    ]
    diff = signature_gate.compare(*signatures, reference=old)
    if not diff.ok:
        raise VerificationError(f"{new}: {diff.describe()}.")
    return {"old": old, "new": new, **diff.to_dict()}


def _meta_graphs(path: str, storage_options: Mapping[str, Any] | None) -> list[dict]:
    """A version's MetaGraphs from its manifest (no TensorFlow), else from the proto."""
    dest = storage.Destination.parse(path, storage_options)
    manifest = _read_manifest(dest, dest.path)
    if manifest and manifest.get("meta_graphs"):
        return manifest["meta_graphs"]
    return inspect_saved_model(path, storage_options)["meta_graphs"]


def _read_manifest(dest: storage.Destination, folder: str) -> dict | None:
    try:
        return json.loads(dest.fs.cat_file(f"{folder}/{c.MANIFEST}"))
    except (FileNotFoundError, ValueError):
        return None


def inspect_saved_model(
    path: str, storage_options: Mapping[str, Any] | None = None, progress=None
) -> dict[str, Any]:
    """MetaGraphs, signatures and files of a SavedModel, plus its manifest if any."""
    require_folder(path, storage_options)
    with storage.local_copy(path, storage_options, progress) as local:
        require_saved_model(local, path)
        from export_core.artifacts.saved_model import describe_saved_model  # TensorFlow: only now

        description = describe_saved_model(local)
        manifest_path = os.path.join(local, c.MANIFEST)
        if os.path.exists(manifest_path):
            with open(manifest_path, encoding="utf-8") as handle:
                description["manifest"] = json.load(handle)
        else:
            description["manifest"] = None
    description["path"] = path
    return description
