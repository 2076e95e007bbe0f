"""Retention: pruning old versions and sweeping abandoned staging, safe under races.

Any number of exports and retention runs, in any number of processes or hosts,
may work on one base at once. What keeps that safe:

* Nothing is removed on a guess. A version is removed only when it is complete
  (``saved_model.pb`` or ``.pbtxt`` *and* ``export_manifest.json``, which
  ``publish`` writes last) and ``keep`` newer complete versions exist; never the
  ``protect`` ed one, never the newest complete one, never a folder whose name is
  not a canonical int64 (``backend.version_number``: TF Serving loads no other) or
  that is incomplete. A staging folder
  or claim marker is removed only when the creation time recorded in its own name
  or content (see ``backend.new_staging_name`` / ``claim_record``) is at least
  ``older_than`` seconds old — backend modification times are never consulted.
* An abandoned claim is the mark of an export that died between claiming its
  version and publishing it: before the marker goes, the version's pending S3
  uploads are aborted and, unless its manifest is there, what of it became
  visible is removed (``direct.abandon``), so no half version stays behind.
* Removing is idempotent. A path that was listed a moment ago and is gone when it
  is read or removed was taken by another run: the ``FileNotFoundError`` of that
  ``ls``, ``cat_file`` or ``rm`` is swallowed there, and only there. Any other
  backend error becomes a ``StorageError`` naming the operation and the path.
* A version is taken apart in the reverse of publish order: manifest, then
  ``saved_model.pb(txt)``, then the rest. From the first removal on, every reader
  (this module, ``registry.list_versions``, TensorFlow Serving) sees it as
  incomplete, so a half-removed version is neither served nor counted among the
  ``keep`` newest.
* A labelled version stays (``labels.json``, see ``export_core.registry.labels``): the
  newest ``keep`` complete versions are kept, labelled or not, and every labelled
  one beyond them too, like ``protect``, and every label's rollback targets (its last
  ``ROLLBACK_DEPTH`` previous holders), so a ``rollback`` never finds its version
  gone; a label never makes another version go. Why each version stays is
  ``storage.kept`` (``retention_plan``), which ``keras-export versions`` shows.
  The labels are read before choosing and again right before each removal, so a
  label set meanwhile still saves its version. A ``labels.json`` that cannot be
  read stops the run (``StorageError``): nothing is removed on a guess.

Names written before staging folders recorded a time (``.staging-<uuid hex>``)
have no known age. This release never writes them, so one can only belong to an
export run by an older release: ``sweep_untimed=True`` (the default, and the old
rule) removes them; pass ``sweep_untimed=False`` while older exporters may still
be running against the same base.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from export_core.errors import ExportValidationError
from export_core.storage.backend import LAST_FILES, MANIFEST_FILE, Destination
from export_core.storage.direct import abandon
from export_core.storage.idempotent import entries, read_if_present, remove_if_present
from export_core.storage.kept import kept_because, label_reasons, version_states
from export_core.storage.label_file import LabelDocument, load_document
from export_core.storage.names import (
    CLAIMS_DIR,
    STAGING_PREFIX,
    claim_created,
    is_staging_name,
    staging_created,
    staging_owner_gone,
    version_number,
)

# Far longer than a slow export takes from creating its staging folder to
# removing it (or from claiming a version to writing its manifest).
STALE_AFTER = 6 * 60 * 60.0

Seconds = float | dt.timedelta


@dataclass(frozen=True)
class Collected:
    """What one retention run removed."""

    pruned: tuple[int, ...]
    swept: tuple[str, ...]

    def to_dict(self) -> dict[str, list]:
        return {"pruned": list(self.pruned), "swept": list(self.swept)}


def collect_garbage(
    dest: Destination, keep: int, *, sweep: bool = True, older_than: Seconds = STALE_AFTER
) -> Collected:
    """Prunes versions beyond the newest ``keep`` (labelled ones stay), then sweeps staging.

    Args:
        dest: The base holding the versions.
        keep: How many of the newest complete versions to keep (>= 1).
        sweep: Also run ``sweep_staging``.
        older_than: The age (seconds or a timedelta) from which staging folders and
            claims count as abandoned; see ``sweep_staging``.

    Returns:
        The pruned versions and swept names.

    Raises:
        ExportValidationError: ``keep`` < 1 or ``older_than`` < 0.
        StorageError: The backend failed other than by a path having vanished.
    """
    pruned = prune_versions(dest, keep, older_than=older_than)
    swept = sweep_staging(dest, older_than=older_than) if sweep else []
    return Collected(tuple(pruned), tuple(swept))


def prune_versions(
    dest: Destination, keep: int, protect: int | None = None, *, older_than: Seconds = STALE_AFTER
) -> list[int]:
    """Removes the oldest complete versions beyond the newest ``keep``.

    Only integer folders holding ``saved_model.pb`` (or ``.pbtxt``) and the
    manifest count and can go; anything else (staging, half-written or foreign
    folders) is never touched, nor is ``protect``, the newest complete version, a
    labelled version or a label's rollback target (which count among the ``keep``
    newest when they are): ``retention_plan`` says which. A folder with the proto but no
    manifest, as tools older than the manifest wrote them, counts as complete only
    when its name, read as the unix seconds ``claim_version`` took it from, is at
    least ``older_than`` old: a publish that recent may still be writing.

    Args:
        dest: The base holding the versions.
        keep: How many of the newest complete versions to keep (>= 1).
        protect: A version never to remove (the one just published).
        older_than: See above; seconds or a timedelta.

    Returns:
        The removed versions, oldest first (removed by this call, or concurrently
        by another run).

    Raises:
        ExportValidationError: ``keep`` < 1 or ``older_than`` < 0.
        StorageError: The backend failed other than by a path having vanished, or
            ``labels.json`` is not a label document.
    """
    if keep < 1:
        raise ExportValidationError(f"keep_versions must be >= 1, got {keep}.")
    plan = retention_plan(dest, keep, protect, older_than=older_than)
    removed = []
    for version in (v for v, reasons in plan.items() if not reasons):
        # Labelled, or made a rollback target, since the plan was made: it stays.
        if version not in label_reasons(load_document(dest)):
            _remove_version(dest, version)
            removed.append(version)
    return removed


def retention_plan(
    dest: Destination,
    keep: int | None = None,
    protect: int | None = None,
    *,
    older_than: Seconds = STALE_AFTER,
    document: LabelDocument | None = None,
) -> dict[int, tuple[str, ...]]:
    """Every version folder of ``dest``, oldest first -> why retention keeps it.

    The reasons are ``storage.kept``'s (``newest``, ``keep``, ``label:stable``,
    ``rollback:stable``...); a version with none is what ``prune_versions`` with
    the same arguments removes. ``keep`` None: what ``keep=1`` removes, without
    marking the newest ``keep`` ones. ``document`` saves a read of ``labels.json``
    when the caller has it.

    Raises:
        ExportValidationError: ``keep`` < 1 or ``older_than`` < 0.
        StorageError: The backend failed, or ``labels.json`` is not a label document.
    """
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ExportValidationError(f"keep must be an integer >= 1, got {keep!r}.")
    states = version_states(dest, time.time() - _seconds(older_than))
    labels = load_document(dest) if document is None else document
    return kept_because(states, labels, keep, protect)


def sweep_staging(
    dest: Destination, *, older_than: Seconds = STALE_AFTER, sweep_untimed: bool = True
) -> list[str]:
    """Removes staging folders and claim markers that exports abandoned.

    Only names this package creates are touched: ``.staging-*`` folders directly
    under the base, the ``.<name>.staging-*`` folders of ``timestamped=False``
    exports into ``<base>/<name>`` (under the base) or into the base itself (beside
    it, in its parent), and markers in ``.claims/``; each only when the time
    recorded in its name (staging) or content (claim) is at least ``older_than``
    old, or, for a local staging folder, when the process its name records (on this
    host) is gone. Safe to run while exports to the same base are in progress.

    Args:
        dest: The base to sweep.
        older_than: Seconds (or a timedelta) from which a folder or claim counts as
            abandoned; 0 removes every one made up to now (e.g. right after the
            exports that used the base were killed).
        sweep_untimed: Also remove staging folders and claims that record no time
            (written by an older release; see the module docstring).

    Returns:
        The removed names: ``.staging-…`` and ``.claims/<version>``.

    Raises:
        ExportValidationError: ``older_than`` < 0.
        StorageError: The backend failed other than by a path having vanished.
    """
    cutoff = time.time() - _seconds(older_than)
    removed = []
    for name, path in entries(dest, dest.path):
        if is_staging_name(name):
            if _stale_staging(name, cutoff, sweep_untimed):
                remove_if_present(dest, path, recursive=True)
                removed.append(name)
        elif name == CLAIMS_DIR:
            removed += _sweep_claims(dest, path, cutoff, sweep_untimed)
    removed += sweep_beside(dest, cutoff, sweep_untimed)
    return removed


def sweep_beside(dest: Destination, cutoff: float, untimed: bool = True) -> list[str]:
    """Removes the abandoned ``.<leaf>.staging-*`` folders of ``timestamped=False``
    exports into the base itself: they sit in the base's parent, beside it."""
    parent, _, leaf = dest.path.rstrip("/").rpartition("/")
    if not parent or not leaf:
        return []
    removed = []
    for name, path in entries(dest, parent):
        if name.startswith(f".{leaf}{STAGING_PREFIX}") and _stale_staging(name, cutoff, untimed):
            remove_if_present(dest, path, recursive=True)
            removed.append(f"../{name}")
    return removed


def _stale_staging(name: str, cutoff: float, untimed: bool) -> bool:
    """Old enough by the time in its name, or a local one whose process is gone."""
    return staging_owner_gone(name) or _abandoned(staging_created(name), cutoff, untimed)


def _sweep_claims(dest: Destination, folder: str, cutoff: float, untimed: bool) -> list[str]:
    removed = []
    for name, path in entries(dest, folder):
        content = read_if_present(dest, path)
        if content is None:  # the publish finished, or another sweep came first
            continue
        if _abandoned(claim_created(name, content), cutoff, untimed):
            version = version_number(name)
            if version is not None:  # its export died: pending uploads, any half of a version
                abandon(dest, version)
            remove_if_present(dest, path)
            removed.append(f"{CLAIMS_DIR}/{name}")
    return removed


def _abandoned(created: float | None, cutoff: float, untimed: bool) -> bool:
    return untimed if created is None else created <= cutoff


def _remove_version(dest: Destination, version: int) -> None:
    folder = dest.join(str(version))
    # The reverse of publish order (module docstring): incomplete from the first rm on.
    for name in (MANIFEST_FILE, *LAST_FILES):
        remove_if_present(dest, f"{folder}/{name}")
    remove_if_present(dest, folder, recursive=True)


def _seconds(older_than: Any) -> float:
    if isinstance(older_than, dt.timedelta):
        older_than = older_than.total_seconds()
    if isinstance(older_than, bool) or not isinstance(older_than, int | float) or older_than < 0:
        raise ExportValidationError(
            f"older_than must be a number of seconds >= 0 or a timedelta, got {older_than!r}; "
            "e.g. older_than=6 * 3600, or 0 right after every export to the base was stopped."
        )
    return float(older_than)
