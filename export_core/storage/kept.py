"""Why retention keeps a version: one answer for ``gc``, ``keep_versions`` and ``versions``.

``prune_versions`` removes exactly the versions this module gives no reason for, and
``keras-export versions`` shows the same reasons, so what the listing says is what
``gc`` does. The reasons, in the order they are listed:

* ``incomplete``: the folder has no ``saved_model.pb``; retention never touches it.
* ``publishing``: the proto is there but not the manifest, and the name (unix seconds)
  is recent: a publish may still be writing it.
* ``newest``: the newest complete version, what TensorFlow Serving serves; never removed.
* ``keep``: one of the ``keep`` newest complete versions (only when a number is given).
* ``protected``: the version a caller protects (the one an export just published).
* ``label:<name>``: a label points at it.
* ``rollback:<name>``: one of the label's rollback targets (its last
  ``ROLLBACK_DEPTH`` previous holders), so ``rollback`` always finds it complete.

A complete version with no reason is one that ``gc --keep N`` (``keep_versions=N``)
removes; with no ``keep`` given, what ``gc --keep 1`` removes.
"""

from __future__ import annotations

from collections.abc import Mapping

from export_core.storage.backend import LAST_FILES, MANIFEST_FILE, Destination
from export_core.storage.idempotent import entries
from export_core.storage.label_file import LabelDocument
from export_core.storage.names import version_number

COMPLETE, INCOMPLETE, PUBLISHING = "complete", "incomplete", "publishing"
NEWEST, KEEP, PROTECTED = "newest", "keep", "protected"


def version_states(dest: Destination, cutoff: float) -> dict[int, str]:
    """Every version folder of ``dest`` (canonical int64 names only) -> its state.

    ``complete``: the proto and the manifest (``publish`` writes it last), or the
    proto alone in a folder named at least ``cutoff`` (unix seconds) ago, as tools
    older than the manifest left them. Only complete versions can be removed.
    """
    states = {}
    for name, path in entries(dest, dest.path):
        version = version_number(name)
        if version is None:
            continue
        names = {child for child, _ in entries(dest, path)}
        if not names.intersection(LAST_FILES):
            states[version] = INCOMPLETE
        elif MANIFEST_FILE in names or version <= cutoff:
            states[version] = COMPLETE
        else:
            states[version] = PUBLISHING
    return dict(sorted(states.items()))


def label_reasons(document: LabelDocument) -> dict[int, list[str]]:
    """Version -> ``label:<name>`` for each label on it, then ``rollback:<name>`` for
    each label it is a rollback target of (labels sorted)."""
    reasons: dict[int, list[str]] = {}
    for label in sorted(document.labels):
        reasons.setdefault(document.labels[label], []).append(f"label:{label}")
    for label in sorted(document.rollback_targets):
        for version in dict.fromkeys(document.rollback_targets[label]):
            reasons.setdefault(version, []).append(f"rollback:{label}")
    return reasons


def kept_because(
    states: Mapping[int, str],
    document: LabelDocument,
    keep: int | None = None,
    protect: int | None = None,
) -> dict[int, tuple[str, ...]]:
    """Every version of ``states`` -> why retention keeps it (empty: it may go).

    Args:
        states: ``version_states`` of the base.
        document: The base's label document.
        keep: How many of the newest complete versions to keep; None counts no
            ``keep`` reason (the newest is kept all the same).
        protect: A version never to remove.
    """
    complete = [v for v, state in states.items() if state == COMPLETE]
    newest_n = set(complete[-keep:]) if keep else set()
    by_labels = label_reasons(document)
    kept = {}
    for version, state in states.items():
        reasons = [] if state == COMPLETE else [state]
        if complete and version == complete[-1]:
            reasons.append(NEWEST)
        elif version in newest_n:
            reasons.append(KEEP)
        if version == protect:
            reasons.append(PROTECTED)
        kept[version] = (*reasons, *by_labels.get(version, ()))
    return kept
