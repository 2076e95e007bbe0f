"""The label document of a base (``<base>/labels.json``), and reading it.

Labels are changed by ``registry.labels``; retention reads them (a labelled version
stays), which is why the document itself lives with the storage it is kept in.

``{"labels": {"stable": 17, "canary": 18}, "history": [<event>, ...]}``: each label
points at a version, and every change is an event in the history (who, when, from
which version to which, with an id that makes a retried write recognisable).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from export_core.errors import StorageError
from export_core.storage.backend import Destination
from export_core.storage.conditional import read_with_token

LABELS_FILE = "labels.json"


@dataclass(frozen=True)
class LabelEvent:
    """One change of one label; ``action`` is "label", "promote" or "rollback"."""

    label: str
    version: int
    previous: int | None
    at: str
    by: str
    action: str
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelEvent:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class LabelDocument:
    """The labels of one base (label -> version) and every change made to them."""

    labels: Mapping[str, int] = field(default_factory=dict)
    history: tuple[LabelEvent, ...] = ()

    def labels_of(self, version: int) -> tuple[str, ...]:
        """The labels pointing at ``version``, sorted."""
        return tuple(sorted(k for k, v in self.labels.items() if v == version))

    def rollback_target(self, label: str) -> int | None:
        """The holder before the current one: the label's history replayed as a stack."""
        stack: list[int] = []
        for event in (e for e in self.history if e.label == label):
            stack = stack[:-1] if event.action == "rollback" else [*stack, event.version]
        ok = len(stack) > 1 and stack[-1] == self.labels.get(label)
        return stack[-2] if ok else None

    def with_event(self, event: LabelEvent) -> LabelDocument:
        return LabelDocument({**self.labels, event.label: event.version}, (*self.history, event))

    def to_dict(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "history": [e.to_dict() for e in self.history]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelDocument:
        labels = dict(data.get("labels") or {})
        if not all(isinstance(k, str) and type(v) is int for k, v in labels.items()):
            raise ValueError(f"'labels' must map names to integer versions, got {labels!r}")
        return cls(labels, tuple(LabelEvent.from_dict(e) for e in data.get("history") or ()))


def load_document(dest: Destination) -> LabelDocument:
    """The document of ``dest`` (empty when missing); what retention reads."""
    path = dest.join(LABELS_FILE)
    return parse_document(dest, path, read_with_token(dest, path)[0])


def parse_document(dest: Destination, path: str, data: bytes | None) -> LabelDocument:
    try:
        return LabelDocument.from_dict(json.loads(data)) if data is not None else LabelDocument()
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StorageError(
            f"'{dest.uri_of(path)}' is not a label document ({exc}). Restore it from the "
            "store's object versions or remove it (every label is then unset)."
        ) from exc
