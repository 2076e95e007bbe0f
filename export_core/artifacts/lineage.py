"""Lineage: where a version came from, recorded in its manifest and its event.

The source model (URI and sha256), the package versions, the git commit of the
working directory when it is a checkout, the user's own ``metadata`` (training
metrics, dataset version...), the version it replaces (the parent), and, when run
under Prefect, the flow run and deployment (given by the Prefect layer: this
module does not import Prefect).
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from typing import Any

from export_core.errors import ExportValidationError

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "keras-savedmodel-export", "prefect")


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def git_commit(folder: str = ".") -> str | None:
    """The commit checked out in ``folder`` (the working directory), if it is a checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def check_metadata(metadata: Any) -> dict[str, Any]:
    """User metadata must be a JSON object (it is stored in the manifest as is).

    Raises:
        ExportValidationError: Not a mapping with string keys, or not JSON-serializable.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise ExportValidationError(
            "metadata must be a dict with string keys, e.g. {'auc': 0.91, 'dataset': 'v7'}; "
            f"received {type(metadata).__name__}."
        )
    try:
        json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise ExportValidationError(f"metadata must be JSON-serializable: {exc}.") from exc
    return dict(metadata)


def collect_lineage(
    source: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    parent_version: int | None = None,
    orchestrator: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``lineage`` section of a manifest."""
    source = dict(source or {})
    return {
        "source": {"uri": source.get("uri"), "sha256": source.get("sha256")},
        "packages": package_versions(),
        "git_commit": git_commit(),
        "metadata": check_metadata(metadata),
        "parent_version": parent_version,
        **({"prefect": dict(orchestrator)} if orchestrator else {}),
    }
