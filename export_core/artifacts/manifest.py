"""``export_manifest.json``: what a version holds, written last into its folder.

Readers can check every file against it (size and sha256) and see, without
loading TensorFlow, what each MetaGraph offers and how the version was verified.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from export_core import constants as c
from export_core.artifacts.saved_model import describe_saved_model
from export_core.errors import VerificationError, writing_into
from export_core.storage.transfer import sha256_file

MANIFEST = c.MANIFEST


@dataclass(frozen=True)
class Manifest:
    """The manifest's content; ``to_dict``/``from_dict`` give its JSON form."""

    files: Mapping[str, Mapping[str, Any]]
    meta_graphs: list[dict[str, Any]]
    versions: Mapping[str, str]
    source: Mapping[str, Any]
    parity: Mapping[str, Any] | None
    created: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": {k: dict(v) for k, v in self.files.items()},
            "meta_graphs": self.meta_graphs,
            "versions": dict(self.versions),
            "source": dict(self.source),
            "parity": dict(self.parity) if self.parity is not None else None,
            "created": self.created,
            **dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        known = {"files", "meta_graphs", "versions", "source", "parity", "created"}
        return cls(
            files=data["files"],
            meta_graphs=data["meta_graphs"],
            versions=data["versions"],
            source=data.get("source", {}),
            parity=data.get("parity"),
            created=data["created"],
            extra={k: v for k, v in data.items() if k not in known},
        )


def build_manifest(
    folder: str, *, source: Mapping[str, Any] | None = None, parity: Mapping[str, Any] | None = None
) -> Manifest:
    """Describes the SavedModel in local ``folder`` (every file but the manifest)."""
    description = describe_saved_model(folder)
    files = {
        rel: {"size": size, "sha256": sha256_file(os.path.join(folder, rel))}
        for rel, size in description["files"].items()
        if rel not in (MANIFEST, c.SIGNATURE)
    }
    return Manifest(
        files=files,
        meta_graphs=description["meta_graphs"],
        versions={
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        source=dict(source or {}),
        parity=parity,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def write_manifest(folder: str, manifest: Manifest) -> str:
    path = os.path.join(folder, MANIFEST)
    with writing_into(folder), open(path, "w", encoding="utf-8") as handle:
        json.dump(manifest.to_dict(), handle, indent=2, sort_keys=True)
    return MANIFEST


def check_files(folder: str, manifest: Manifest) -> None:
    """Raises ``VerificationError`` unless ``folder`` holds exactly the listed files (and
    the manifest and its signature, which cannot list themselves)."""
    present = {
        os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
        for root, _dirs, names in os.walk(folder)
        for name in names
    } - {MANIFEST, c.SIGNATURE}
    missing = sorted(set(manifest.files) - present)
    unexpected = sorted(present - set(manifest.files))
    if missing or unexpected:
        raise VerificationError(
            f"{folder} does not match its manifest: missing {missing}, unexpected {unexpected}."
        )
    for rel, info in manifest.files.items():
        full = os.path.join(folder, rel)
        if os.path.getsize(full) != info["size"] or sha256_file(full) != info["sha256"]:
            raise VerificationError(f"{rel} in {folder} differs from the manifest (size/sha256).")
