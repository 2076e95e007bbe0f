"""Labels: named pointers ("stable", "canary") to versions of one base, kept beside them.

One JSON document per base, ``<base>/labels.json`` (TF Serving ignores non-integer names)::

    {"labels": {"stable": 17, "canary": 18},
     "history": [{"label": "stable", "version": 17, "previous": null, "action": "label",
                  "at": "2026-12-01T20:00:00+00:00", "by": "ci@build-7", "id": "<hex>"}]}

Every change is a compare-and-swap retried on conflict: read the document with a token,
change it, write it only if the token still holds. ``write_if_unchanged`` is the one
place that knows backends: S3 ``If-Match: <ETag>`` (``If-None-Match: *`` to create), GCS
``ifGenerationMatch=<generation>`` (0 to create), local disk an ``O_CREAT | O_EXCL`` lock
file (``labels.json.lock``) around a compare and an ``os.replace``, memory:// a process
lock. Each event has an ``id``, so a write whose answer was lost and that a client
retried is recognised on the next round and never recorded twice.

Each label remembers its last ``ROLLBACK_DEPTH`` previous holders (its rollback targets,
which retention keeps) and the document its newest ``HISTORY_LIMIT`` events; see
``export_core.storage.label_file``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from export_core.errors import ExportError, ExportValidationError, StorageError
from export_core.storage.backend import LAST_FILES, MANIFEST_FILE, Destination, storage_error
from export_core.storage.conditional import read_with_token, write_if_unchanged, writer_for
from export_core.storage.label_file import (  # noqa: F401 - part of this API
    HISTORY_LIMIT,
    LABELS_FILE,
    ROLLBACK_DEPTH,
    LabelDocument,
    LabelEvent,
    load_document,
    parse_document,
)

ATTEMPTS = 30  # compare-and-swap rounds before a conflict is reported
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
Options = Mapping[str, Any] | None


@dataclass(frozen=True)
class LabelChange:
    """What one ``set_label``/``promote``/``rollback`` call did, and the document after it.

    ``previous`` is the version the label held when this call's compare-and-swap
    succeeded (what it replaced), not a value read before: under concurrent writers
    only that one is true. ``changed`` is False when the label already pointed at the
    version: nothing was written or recorded.
    """

    label: str
    version: int
    previous: int | None
    changed: bool
    document: LabelDocument

    @property
    def labels(self) -> Mapping[str, int]:
        return self.document.labels

    @property
    def history(self) -> tuple[LabelEvent, ...]:
        return self.document.history

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "version": self.version,
            "previous": self.previous,
            "changed": self.changed,
            "labels": dict(self.document.labels),
        }


def read_labels(base: str, storage_options: Options = None) -> LabelDocument:
    """The label document of ``base``; an empty one when none was written yet.

    Raises:
        StorageError: The store failed, or ``labels.json`` is not a label document.
    """
    dest = Destination.parse(base, storage_options)
    dest.check_reachable()
    return load_document(dest)


def set_label(
    base: str, label: str, version: int, storage_options: Options = None, actor: str | None = None
) -> LabelChange:
    """Points ``label`` at ``version``, a complete version of ``base``; returns what changed.

    Nothing is written (``changed`` False) when the label already points there.
    ``actor`` (default ``user@host``) is recorded in the history.

    Raises:
        ExportValidationError: A bad label name, or no complete version ``version``.
        StorageError: The store failed, or other writers won every attempt.
    """
    return _assign(base, label, version, storage_options, actor, "label")


def promote(
    base: str, version: int, label: str, storage_options: Options = None, actor: str | None = None
) -> LabelChange:
    """Moves ``label`` to ``version`` (recorded as a promotion); see ``set_label``."""
    return _assign(base, label, version, storage_options, actor, "promote")


def rollback(
    base: str, label: str, storage_options: Options = None, actor: str | None = None
) -> LabelChange:
    """Moves ``label`` back to the version that held it before the current one.

    Raises:
        ExportValidationError: The label is unset, had no earlier holder, or that
            version is no longer complete.
        StorageError: The store failed, or other writers won every attempt.
    """
    dest, event_id = Destination.parse(base, storage_options), uuid.uuid4().hex
    check_label(label)
    dest.check_reachable()
    by = actor or default_actor()

    def change(doc: LabelDocument) -> LabelEvent | None:
        current, target = doc.labels.get(label), doc.rollback_target(label)
        if target is None:
            state = "is not set"
            if current is not None:
                state = (
                    f"has had no holder before {current} that it can return to (a label "
                    f"remembers its last {ROLLBACK_DEPTH} previous holders)"
                )
            raise ExportValidationError(
                f"Cannot roll back '{label}' of {base}: it {state}. Point it at a version "
                "explicitly: keras-export label BASE LABEL VERSION."
            )
        require_complete(dest, target)
        return LabelEvent(label, target, current, _now(), by, "rollback", event_id)

    return _apply(dest, label, event_id, change)


def _assign(base, label, version, storage_options, actor, action) -> LabelChange:
    dest, event_id = Destination.parse(base, storage_options), uuid.uuid4().hex
    check_label(label)
    dest.check_reachable()  # a missing bucket is not a missing version
    require_complete(dest, version)
    by = actor or default_actor()

    def change(doc: LabelDocument) -> LabelEvent | None:
        current = doc.labels.get(label)
        if current == version:
            return None
        return LabelEvent(label, version, current, _now(), by, action, event_id)

    return _apply(dest, label, event_id, change)


def _apply(
    dest: Destination,
    label: str,
    event_id: str,
    event_for: Callable[[LabelDocument], LabelEvent | None],
) -> LabelChange:
    """Records the event ``event_for`` makes of the document (None: nothing to do), by
    compare-and-swap; reports what this call did. An event already in the document
    (a write whose answer was lost, then retried) is this call's and is not added
    again. ``with_event`` trims the history to its newest ``HISTORY_LIMIT`` events,
    which cannot drop this call's event before its retry looks for it: the retry reads
    the document right after the lost answer, and only that many later writes by
    others in between could push the event out."""
    done: dict[str, Any] = {}

    def change(doc: LabelDocument) -> LabelDocument | None:
        mine = next((e for e in doc.history if e.id == event_id), None)
        event = mine or event_for(doc)
        done["event"] = event
        done["current"] = doc.labels.get(label)
        return None if mine is not None or event is None else doc.with_event(event)

    document = update_labels(dest, change)
    event = done["event"]
    if event is None:
        current = done["current"]
        return LabelChange(label, current, current, False, document)
    return LabelChange(label, event.version, event.previous, True, document)


def update_labels(
    dest: Destination,
    change: Callable[[LabelDocument], LabelDocument | None],
    attempts: int = ATTEMPTS,
) -> LabelDocument:
    """Applies ``change`` to the document by compare-and-swap, retrying on conflict.

    ``change`` returns the new document, or None to write nothing; after a conflict
    it runs again on the fresher document. Returns the document as written (or read).

    Raises:
        StorageError: The store failed, or the document changed under every attempt.
    """
    path = dest.join(LABELS_FILE)
    writer_for(dest.fs)  # an unsupported backend fails before anything is read
    for attempt in range(attempts):
        data, token = read_with_token(dest, path)
        current = parse_document(dest, path, data)
        new = change(current)
        if new is None:
            return current
        body = json.dumps(new.to_dict(), indent=1).encode()
        try:
            if write_if_unchanged(dest.fs, path, body, token):
                return new
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001 - backends raise their own error types
            raise storage_error(f"Writing '{dest.uri_of(path)}' failed", exc) from exc
        time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))  # full jitter
    raise StorageError(
        f"Updating '{dest.uri_of(path)}' failed: other writers changed it during each of "
        f"{attempts} attempts. Nothing of this change was written; try again."
    )


def check_label(label: Any) -> str:
    """Raises ``ExportValidationError`` unless ``label`` is a usable label name."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ExportValidationError(
            "A label starts with a letter and holds letters, digits, '_', '.' or '-' (at "
            f"most 63), received {label!r}; e.g. 'stable', 'canary'."
        )
    return label


def is_complete(dest: Destination, version: int) -> bool:
    """The version holds the proto and the manifest (which ``publish`` writes last)."""
    folder = dest.join(str(version))
    dest.fs.invalidate_cache(folder)
    try:
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in dest.fs.ls(folder, detail=False)}
    except FileNotFoundError:
        return False
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Listing '{dest.uri_of(folder)}' failed", exc) from exc
    return MANIFEST_FILE in names and bool(names.intersection(LAST_FILES))


def require_complete(dest: Destination, version: Any) -> None:
    """Raises ``ExportValidationError`` unless ``version`` is a complete version of ``dest``."""
    if type(version) is not int or version < 0:
        raise ExportValidationError(f"A version is an integer >= 0, received {version!r}.")
    if not is_complete(dest, version):
        raise ExportValidationError(
            f"{dest.child_uri(str(version))} is not a complete version (it needs "
            f"{LAST_FILES[0]} and {MANIFEST_FILE}). List them: keras-export versions {dest.uri}"
        )


def default_actor() -> str:
    with contextlib.suppress(OSError, KeyError):
        return f"{getpass.getuser()}@{socket.gethostname()}"
    return f"uid{os.getuid()}@{socket.gethostname()}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
