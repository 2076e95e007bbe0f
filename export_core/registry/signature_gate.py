"""The serving-signature compatibility gate: does the new export still serve the old clients?

Before a version is published, its serving signatures are compared with those of
the version a client would be moved from (the holder of a label, by default the
newest complete version). Breaking, for a client of the old version:

* a signature, an input or an output it used is gone;
* a dtype changed;
* a shape no longer accepts what it sent or no longer gives what it read (a
  different rank, a size that changed, a size that was free and is now fixed);
* a new input: the old clients do not send it.

Added outputs and added signatures are compatible. Only manifests are read (no
TensorFlow): every version carries its signatures in ``export_manifest.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from export_core import constants as c
from export_core.errors import ExportValidationError


class SignatureChangeError(ExportValidationError):
    """The new export's serving signatures break clients of the version it replaces."""


@dataclass(frozen=True)
class SignatureDiff:
    """What changed between two versions' serving signatures."""

    reference: str
    breaking: tuple[str, ...] = ()
    compatible: tuple[str, ...] = ()
    version: int | None = None  # the version compared with (the new one's parent)

    @property
    def ok(self) -> bool:
        return not self.breaking

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "version": self.version,
            "ok": self.ok,
            "breaking": list(self.breaking),
            "compatible": list(self.compatible),
        }

    def describe(self) -> str:
        if self.ok:
            extra = f"; compatible changes: {'; '.join(self.compatible)}" if self.compatible else ""
            return f"serving signatures compatible with {self.reference}{extra}"
        return f"serving signatures break clients of {self.reference}: " + "; ".join(self.breaking)


def serving_signatures(meta_graphs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The signatures of the ``serve`` MetaGraph, as a manifest lists them."""
    for meta_graph in meta_graphs:
        if c.SERVE in meta_graph.get("tags", []):
            return dict(meta_graph.get("signatures", {}))
    return {}


def compare(old: Mapping[str, Any], new: Mapping[str, Any], reference: str) -> SignatureDiff:
    """Compares serving signatures (name -> {"inputs": [...], "outputs": [...]})."""
    breaking: list[str] = []
    compatible: list[str] = [f"signature '{k}' added" for k in sorted(set(new) - set(old))]
    for key in sorted(old):
        if key not in new:
            breaking.append(f"signature '{key}' removed")
            continue
        for kind in ("inputs", "outputs"):
            was = {t["name"]: t for t in old[key].get(kind, [])}
            now = {t["name"]: t for t in new[key].get(kind, [])}
            for name in sorted(set(was) - set(now)):
                breaking.append(f"'{key}' {kind[:-1]} '{name}' removed")
            for name in sorted(set(now) - set(was)):
                note = f"'{key}' {kind[:-1]} '{name}' added"
                (breaking if kind == "inputs" else compatible).append(note)
            for name in sorted(set(was) & set(now)):
                problem = _tensor_change(was[name], now[name], kind == "inputs")
                if problem:
                    breaking.append(f"'{key}' {kind[:-1]} '{name}': {problem}")
    return SignatureDiff(reference, tuple(breaking), tuple(compatible))


def _tensor_change(was: Mapping[str, Any], now: Mapping[str, Any], is_input: bool) -> str | None:
    if was["dtype"] != now["dtype"]:
        return f"dtype {was['dtype']} -> {now['dtype']}"
    old_shape, new_shape = list(was["shape"]), list(now["shape"])
    if len(old_shape) != len(new_shape):
        return f"shape {_shape(old_shape)} -> {_shape(new_shape)} (rank changed)"
    for old_dim, new_dim in zip(old_shape, new_shape, strict=True):
        # An input may get freer (fixed -> None); an output may get fixed (None -> n).
        freer_ok = new_dim is None if is_input else old_dim is None
        if old_dim != new_dim and not freer_ok:
            return f"shape {_shape(old_shape)} -> {_shape(new_shape)}"
    return None


def _shape(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def reference_manifest(dest: Any, version: int) -> dict[str, Any] | None:
    """A published version's manifest (None when it has none)."""
    try:
        return json.loads(dest.fs.cat_file(dest.join(str(version), c.MANIFEST)))
    except (FileNotFoundError, ValueError):
        return None


def reference_version(
    dest: Any, label: str | None, storage_options: Mapping[str, Any] | None = None
) -> int | None:
    """The version to compare with: the label's holder, else the newest complete one.

    Raises:
        ExportValidationError: ``label`` is given and no version holds it.
    """
    if label is not None:
        return require_label(dest.uri, label, storage_options)
    dest.fs.invalidate_cache(dest.path)
    for version in sorted(dest.versions(), reverse=True):
        if reference_manifest(dest, version) is not None:
            return version
    return None


def require_label(base: str, label: str, storage_options: Mapping[str, Any] | None) -> int:
    """The version holding ``label`` under ``base``, read from ``labels.json`` alone.

    Raises:
        ExportValidationError: No version holds it (or the base holds no labels).
    """
    from export_core.registry import labels

    holder = labels.read_labels(base, storage_options).labels
    if label not in holder:
        known = ", ".join(sorted(holder)) or "none"
        raise ExportValidationError(
            f"No version under {base} holds the label '{label}' to compare the new serving "
            f"signatures with (labels there: {known}); label one first or leave "
            "compare_label (CLI --compare-label) unset."
        )
    return int(holder[label])


def check(
    dest: Any,
    meta_graphs: Sequence[Mapping[str, Any]],
    label: str | None = None,
    allow_breaking: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> SignatureDiff | None:
    """Gates a new export against the version it replaces; None when there is none.

    Raises:
        SignatureChangeError: Breaking changes and not ``allow_breaking``; nothing
            has been published (the message is the diff and the way out).
    """
    version = reference_version(dest, label, storage_options)
    if version is None:
        return None
    manifest = reference_manifest(dest, version) or {}
    reference = f"version {version}" + (f" (label '{label}')" if label else " (the newest)")
    diff = compare(
        serving_signatures(manifest.get("meta_graphs", [])),
        serving_signatures(meta_graphs),
        reference,
    )
    diff = SignatureDiff(diff.reference, diff.breaking, diff.compatible, version)
    if not diff.ok and not allow_breaking:
        raise SignatureChangeError(
            f"{diff.describe()}. Nothing was published. Keep the old inputs and outputs "
            "(adding outputs is fine), or pass allow_breaking_signature=True (CLI "
            "--allow-breaking-signature) to publish anyway."
        )
    return diff
