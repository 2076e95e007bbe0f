"""TensorFlow Serving's ``--model_config_file`` for bases of versions, with their labels.

TF Serving reads a ``ModelServerConfig`` text proto whose top field is
``model_config_list``; each ``config`` names a model, its base path and which
versions to load. Here that is a ``specific`` policy: every labelled version plus the
newest ``latest`` complete ones (a labelled version counts among those when it is one),
and a ``version_labels`` entry per label, so clients can ask for ``stable``. TF Serving
accepts a label only for a version it has loaded (unless it runs with
``--allow_version_labels_for_unavailable_models``); both come from the same list here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from export_core.artifacts.signing import load_public_key
from export_core.errors import ExportValidationError
from export_core.registry.labels import is_complete, load_document
from export_core.registry.signed import check_signed_version
from export_core.storage.backend import Destination, storage_error

PLATFORM = "tensorflow"


def serving_config(
    bases: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
    latest: int = 2,
    names: Sequence[str] | None = None,
    public_key: Any = None,
) -> str:
    """A ``model_config_list`` text proto serving ``bases``, labels included.

    Args:
        bases: Base paths or URIs of versions, one model each.
        storage_options: fsspec options for every base.
        latest: How many of the newest complete versions to serve besides the labelled.
        names: Model names, one per base (default: each base's last path component).
        public_key: When given, every version served must be signed by this key's
            private key, files intact (``registry.signed``); else nothing is printed.

    Returns:
        The text for ``tensorflow_model_server --model_config_file=...``.

    Raises:
        ExportValidationError: Bad arguments, duplicate names, a base with nothing to
            serve, or a label pointing at a version that is no longer complete.
        StorageError: A store could not be read.
        VerificationError: With ``public_key``, a served version is not signed by it.
    """
    key = load_public_key(public_key) if public_key is not None else None
    if isinstance(latest, bool) or not isinstance(latest, int) or latest < 0:
        raise ExportValidationError(f"latest must be an integer >= 0, received {latest!r}.")
    dests = [Destination.parse(base, storage_options) for base in bases]
    chosen = _model_names(dests, names)
    blocks = [
        _model_block(name, dest, latest, key) for name, dest in zip(chosen, dests, strict=True)
    ]
    return "model_config_list {\n" + "".join(blocks) + "}\n"


def served_versions(dest: Destination, latest: int) -> tuple[list[int], dict[str, int]]:
    """The versions to serve (oldest first) and the labels of ``dest``.

    Raises:
        ExportValidationError: Nothing to serve, or a label's version is incomplete.
    """
    dest.check_reachable()
    labels = dict(load_document(dest).labels)
    for label, version in sorted(labels.items()):
        if not is_complete(dest, version):
            raise ExportValidationError(
                f"Label '{label}' of {dest.uri} points at version {version}, which is not "
                "complete (or is gone); TF Serving could not load it. Move the label: "
                f"keras-export label {dest.uri} {label} VERSION."
            )
    versions = sorted(set(newest_complete(dest, latest)) | set(labels.values()))
    if not versions:
        raise ExportValidationError(
            f"{dest.uri} has no complete version to serve (with latest={latest} and no "
            "labels). Export one first, or pass latest >= 1."
        )
    return versions, labels


def newest_complete(dest: Destination, count: int) -> list[int]:
    """The newest ``count`` complete versions of ``dest``, oldest first."""
    dest.fs.invalidate_cache(dest.path)
    try:
        candidates = dest.versions()
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Listing '{dest.uri}' failed", exc) from exc
    found: list[int] = []
    for version in reversed(candidates):  # newest first: stop once enough are found
        if len(found) >= count:
            break
        if is_complete(dest, version):
            found.append(version)
    return sorted(found)


def _model_names(dests: list[Destination], names: Sequence[str] | None) -> list[str]:
    if not dests:
        raise ExportValidationError("serving_config needs at least one base.")
    if names is None:
        names = [dest.path.rstrip("/").rsplit("/", 1)[-1] for dest in dests]
    names = list(names)
    if len(names) != len(dests) or not all(isinstance(n, str) and n for n in names):
        raise ExportValidationError(
            f"names must hold one non-empty name per base: {len(dests)} bases, received {names!r}."
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ExportValidationError(
            f"Model names must be unique, {duplicates} repeat (the default name is the "
            "base's last path component); pass names=[...] (CLI: --name) for each base."
        )
    return names


def _model_block(name: str, dest: Destination, latest: int, key: Any = None) -> str:
    versions, labels = served_versions(dest, latest)
    for version in versions if key is not None else ():
        check_signed_version(dest, version, key)
    base_path = dest.path if dest.is_local else dest.uri.rstrip("/")
    lines = [
        "  config {",
        f"    name: {_quote(name)}",
        f"    base_path: {_quote(base_path)}",
        f"    model_platform: {_quote(PLATFORM)}",
        "    model_version_policy {",
        "      specific {",
        *(f"        versions: {v}" for v in versions),
        "      }",
        "    }",
    ]
    for label, version in sorted(labels.items()):
        lines += ["    version_labels {", f"      key: {_quote(label)}", f"      value: {version}"]
        lines.append("    }")
    return "\n".join([*lines, "  }", ""])


def _quote(text: str) -> str:
    """A text-proto string literal (UTF-8 passes through unescaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
