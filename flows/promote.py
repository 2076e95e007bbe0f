"""Promote: move a label to a version (or back), as a Prefect flow an event can trigger.

``promote-version/on-evaluation-passed`` (deployments/serve.py) runs it when an event
``model.evaluation.passed`` arrives with the base and the version in its payload;
every move emits ``keras.model.promoted`` for roll-outs and alerts to react to.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from export_core.errors import ExportValidationError
from export_core.registry import labels
from export_core.registry.signed import require_signed as require_signed_versions
from keras_export.credentials import StorageAccess, storage_access
from keras_export.flows.export import model_flow, warn_about_secrets

PROMOTED_EVENT = "keras.model.promoted"


# No task retries: a rollback whose answer was lost would roll back twice. Conflicts
# between writers are retried inside (compare-and-swap).
@task(name="move-label", cache_policy=NO_CACHE)
def move_label(
    base: str,
    label: str,
    version: int | None,
    access: StorageAccess,
    actor: str,
    public_key: str | None = None,
) -> dict[str, Any]:
    """Promotes (``version`` given) or rolls back (``None``); compare-and-swap inside.

    ``previous`` is what this move replaced; ``changed`` is False (and nothing was
    recorded) when the label already pointed there. With ``public_key`` the version
    the label would move to must be signed by that key (else nothing moves)."""
    options = access.storage_options()
    if public_key is not None:
        target = labels.read_labels(base, options).rollback_target(label)
        if version is not None or target is not None:  # else rollback reports it
            chosen = target if version is None else int(version)
            require_signed_versions(base, [chosen], public_key, options)
    if version is None:
        change = labels.rollback(base, label, options, actor=actor)
    else:
        change = labels.promote(base, int(version), label, options, actor=actor)
    return {
        "base": base,
        "label": label,
        "previous": change.previous,
        "version": change.version,
        "changed": change.changed,
    }


@model_flow(name="promote-version", validate_parameters=False)
def promote_version(
    base: str,
    label: str = "stable",
    version: int | None = None,
    credentials: Any = None,
    storage_options: dict | None = None,
    require_signed: bool = False,
    public_key: str | None = None,
) -> dict[str, Any]:
    """Moves ``label`` under ``base`` to ``version``; without a version, rolls it back.

    ``require_signed`` (with ``public_key``: PEM text or a file's path; a key alone
    implies it) refuses, with a ``VerificationError`` and nothing moved, a version not
    signed by that key for its own number or whose files differ from its signed manifest.

    Returns:
        ``{"base", "label", "previous", "version", "changed"}``; the label's history
        keeps both. A move to where the label already points changes nothing and
        emits no event.
    """
    logger = get_run_logger()
    warn_about_secrets(logger, storage_options)
    from prefect.runtime import flow_run

    actor = f"prefect flow run {flow_run.id}"
    if require_signed and not public_key:
        raise ExportValidationError(
            "require_signed needs public_key: the PEM (or its file's path) of the public key "
            "of the exporter's signing key."
        )
    access = storage_access(credentials, storage_options)
    moved = move_label(base, label, version, access, actor, public_key or None)
    if not moved["changed"]:
        logger.info("Label %s of %s already points at %s", label, base, moved["version"])
        return moved  # nothing moved: no event
    logger.info("Label %s of %s: %s -> %s", label, base, moved["previous"], moved["version"])
    name = base.rstrip("/").rsplit("/", 1)[-1]
    emit_event(
        event=PROMOTED_EVENT,
        resource={
            "prefect.resource.id": f"keras-export.model.{name}",
            "prefect.resource.name": name,
        },
        payload=moved,
    )
    return moved
