"""The label document of a base (``<base>/labels.json``), and reading it.

Labels are changed by ``registry.labels``; retention reads them (a labelled version
stays), which is why the document itself lives with the storage it is kept in.

``{"labels": {"stable": 17, "canary": 18}, "rollback_targets": {"stable": [15, 16]},
"history": [<event>, ...]}``: each label points at a version, and every change is an
event in the history (who, when, from which version to which, with an id that makes a
retried write recognisable).

Both lists are bounded, so the document stays small however often labels move:

* ``rollback_targets``: per label, the versions it held before the current one, newest
  last, at most ``ROLLBACK_DEPTH``. ``rollback`` returns to the last of them (and drops
  it); retention keeps every one, so a rollback always finds its version complete.
* ``history``: the newest ``HISTORY_LIMIT`` events; older ones are dropped in the same
  compare-and-swap write that adds a new one.

A document written by an older release has no ``rollback_targets``: they are derived
by replaying its history (each label or promote pushes a version, each rollback pops
one). A replayed suffix of a history is always the top of the true stack, so a
trimmed history gives fewer targets, never a wrong one.
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
ROLLBACK_DEPTH = 3  # previous holders each label remembers (and retention keeps)
HISTORY_LIMIT = 100  # events a document keeps, newest last


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
    """The labels of one base (label -> version), each label's rollback targets (its
    previous holders, newest last) and the newest changes made to them."""

    labels: Mapping[str, int] = field(default_factory=dict)
    history: tuple[LabelEvent, ...] = ()
    rollback_targets: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def labels_of(self, version: int) -> tuple[str, ...]:
        """The labels pointing at ``version``, sorted."""
        return tuple(sorted(k for k, v in self.labels.items() if v == version))

    def rollback_target(self, label: str) -> int | None:
        """The version ``rollback`` would return ``label`` to (None: none remembered)."""
        targets = self.rollback_targets.get(label, ())
        return targets[-1] if targets else None

    def with_event(self, event: LabelEvent) -> LabelDocument:
        """The document after ``event``: a label or promote pushes the replaced holder
        onto the label's rollback targets (the oldest beyond ``ROLLBACK_DEPTH`` drops
        off), a rollback pops the one it returned to; the history keeps its newest
        ``HISTORY_LIMIT`` events. Callers write the result by compare-and-swap, so the
        trimming is part of the same update as the event."""
        targets = tuple(self.rollback_targets.get(event.label, ()))
        if event.action == "rollback":
            targets = targets[:-1]
        elif event.previous is not None:
            targets = (*targets, event.previous)[-ROLLBACK_DEPTH:]
        rollback = {k: v for k, v in self.rollback_targets.items() if k != event.label}
        if targets:
            rollback[event.label] = targets
        history = (*self.history, event)[-HISTORY_LIMIT:]
        return LabelDocument({**self.labels, event.label: event.version}, history, rollback)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "rollback_targets": {k: list(v) for k, v in self.rollback_targets.items()},
            "history": [e.to_dict() for e in self.history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelDocument:
        labels = dict(data.get("labels") or {})
        if not all(isinstance(k, str) and type(v) is int for k, v in labels.items()):
            raise ValueError(f"'labels' must map names to integer versions, got {labels!r}")
        history = tuple(LabelEvent.from_dict(e) for e in data.get("history") or ())
        if "rollback_targets" not in data:  # written by an older release
            return cls(labels, history, replayed_targets(labels, history))
        given = data["rollback_targets"] or {}
        targets = {k: tuple(v) for k, v in dict(given).items()}
        if not all(all(type(v) is int for v in vs) for vs in targets.values()):
            raise ValueError(f"'rollback_targets' must map names to lists of versions: {given!r}")
        return cls(labels, history, {k: v for k, v in targets.items() if v})


def replayed_targets(
    labels: Mapping[str, int], history: tuple[LabelEvent, ...]
) -> dict[str, tuple[int, ...]]:
    """Each label's rollback targets as its history replayed as a stack tells them
    (documents of older releases); a label whose stack does not end at its current
    version (a history cut short by hand) has none."""
    stacks: dict[str, list[int]] = {}
    for event in history:
        stack = stacks.setdefault(event.label, [])
        if event.action == "rollback":
            del stack[-1:]
        else:
            stack.append(event.version)
    return {
        label: tuple(stack[:-1][-ROLLBACK_DEPTH:])
        for label, stack in stacks.items()
        if len(stack) > 1 and stack[-1] == labels.get(label)
    }


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
