"""What one export is asked to do (``ExportRequest``) and what it produced (``ExportResult``).

The Python API and the Prefect flow both build a request and hand it to
``sequence.run_steps``; every option is described at ``api.run_export``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from export_core.steps.verify import ParityReport


@dataclass(frozen=True)
class ExportRequest:
    """Everything one export was asked to do (see ``run_export`` for each option)."""

    model: Any
    destination: Any
    storage: Callable[[], Mapping[str, Any]] = dict  # resolved where a step needs it
    custom_objects: Mapping[str, Any] | None = None
    as_text: bool = False
    input_signature: Any = None
    modes: Any = None
    serving_only: bool = False
    timestamped: bool = True
    sample_inputs: Any = None
    verify: bool | str = True
    keep_versions: int | None = None
    source: Mapping[str, Any] | None = None
    build_id: str | None = None
    metadata: Mapping[str, Any] | None = None
    compare_label: str | None = None
    allow_breaking_signature: bool = False
    warmup: bool = False
    cast_inputs: bool = False
    run_lineage: Mapping[str, Any] | None = None  # who ran it (the flow run, its deployment)
    # The key that signs the version: resolved by publish only (a Prefect Secret loads there).
    signing_key: Callable[[], Any] | None = None


@dataclass(frozen=True)
class ExportResult:
    """What an export produced.

    Attributes:
        path: Path or URI of the SavedModel folder (the version folder when timestamped).
        version: The integer version, or None when ``timestamped=False``.
        modes: The modes exported, e.g. ``("serve", "train", "eval")``.
        parity: The verify-reload report, or None when verification was switched off.
        seconds: Wall time per step (a step that ran several times: the sum).
        warnings: What went wrong after the version became visible (retention):
            the version is published all the same.
        manifest: The published manifest (files, MetaGraphs, signatures).
        pruned: Versions retention removed.
        signature_check: What the signature gate compared, or None.
        lineage: What the manifest records as the version's lineage.
    """

    path: str
    version: int | None
    modes: tuple[str, ...]
    parity: ParityReport | None
    seconds: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    manifest: Any = None
    pruned: tuple[int, ...] = ()
    signature_check: Mapping[str, Any] | None = None
    lineage: Mapping[str, Any] | None = None
