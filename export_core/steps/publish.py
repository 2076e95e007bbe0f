"""The steps after writing: signature-gate, stage, verify-reload's entry, publish.

signature-gate compares the build's serving signatures with the version it replaces.
stage describes the build (the manifest) and, for remote destinations, uploads it
to a staging prefix and confirms the bytes that landed there. verify-reload loads
the build with TensorFlow's loaders. The two are independent (the staged bytes are
confirmed equal to the build's), so they run at the same time: the upload is I/O,
verification is mostly TensorFlow's C++. publish then makes the version visible,
manifest last, and applies retention.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import keras

from export_core import constants as c
from export_core import storage
from export_core.artifacts import manifest as mf
from export_core.artifacts import signing
from export_core.errors import ExportError
from export_core.steps import training_check
from export_core.steps.golden import reference_for
from export_core.steps.validate import ExportPlan
from export_core.steps.verify import ParityReport, verify_reload


def stage_build(
    build_dir: str,
    plan: ExportPlan,
    source: Mapping[str, Any] | None = None,
    progress: storage.ProgressFn | None = None,
    build_id: str | None = None,
):
    """Describes the build (manifest without parity), uploads and confirms it.

    ``progress(bytes_done, bytes_total)`` is called after each uploaded file.
    Returns the draft manifest and what was staged (None for local builds): a
    staging prefix, or on S3 the pending uploads of the version claimed for
    ``build_id`` (see ``storage.direct``).

    Raises:
        StorageError: The upload failed.
        VerificationError: What landed differs from the build.
        Either way the staging prefix is removed.
    """
    draft = mf.build_manifest(build_dir, source=source)
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    staging = storage.stage(build_dir, dest, plan.timestamped, progress, build_id)
    if staging is not None:
        try:
            storage.confirm_staged(dest, build_dir, staging, draft.files)
        except BaseException:
            storage.cleanup_staging(dest, staging)
            raise
    return draft, staging


def gate_signatures(
    build_dir: str, plan: ExportPlan, label: str | None = None, allow_breaking: bool = False
):
    """Compares the build's serving signatures with the version it replaces.

    Returns the ``SignatureDiff`` (None for a first version or ``timestamped=False``).

    Raises:
        SignatureChangeError: Breaking changes and not ``allow_breaking``.
    """
    from export_core.artifacts.saved_model import describe_saved_model
    from export_core.registry import signature_gate

    if not plan.timestamped:
        return None
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    if not dest.fs.exists(dest.path):
        return None
    meta_graphs = describe_saved_model(build_dir)["meta_graphs"]
    return signature_gate.check(dest, meta_graphs, label, allow_breaking, plan.storage_options)


def verify_build(
    build_dir: str,
    model: keras.Model | None,
    plan: ExportPlan,
    sample_inputs: Any = None,
    full: bool = False,
    custom_objects: Mapping[str, Any] | None = None,
) -> ParityReport:
    """Reloads the build with TensorFlow's loaders and checks serving parity, then the
    train and eval MetaGraphs against Keras's own steps (``training_check``).

    A build with ``golden.npz`` (``sequence``'s golden step) is checked against the
    outputs stored there, which the in-memory model computed from its inputs.
    """
    skipped = training_check.should_check(model, plan, full) if model is not None else ""
    # The training check loads, restores and runs the train and eval MetaGraphs in TF1
    # sessions itself, which covers what verify_reload's checks of them show.
    modes = plan.modes if skipped is not None or full else (c.SERVE,)
    if os.path.exists(os.path.join(build_dir, c.GOLDEN)):
        parity = verify_reload(build_dir, None, plan.inputs, modes, None, full)
    else:
        parity = verify_reload(build_dir, model, plan.inputs, modes, sample_inputs, full)
    if model is None:
        return parity
    if skipped is not None:
        return dataclasses.replace(
            parity, training=training_check.TrainingCheck(skipped=skipped).to_dict()
        )
    feeds = reference_for(build_dir, None, plan.inputs, sample_inputs).feeds
    result = training_check.check_training(
        build_dir, model, plan, feeds, parity.tolerance, custom_objects
    )
    loaders = parity.loaders + tuple(f"tf1:{m}" for m in result.compared if m not in modes)
    return dataclasses.replace(parity, loaders=loaders, training=result.to_dict())


def stage_while_verifying(
    upload: Any, verify: Callable[[], ParityReport | None], plan: Callable[[], ExportPlan]
):
    """Runs ``verify()`` here while ``upload``, a started ``stage_build``, goes on.

    ``upload`` is anything with ``result()``: a ``concurrent.futures.Future``, a
    Prefect task future. Returns ``(draft, staging, parity)``. If verification fails,
    the upload is waited for and what it staged removed (with the storage options
    ``plan()`` resolves then) before the error is raised.
    """
    try:
        parity = verify()
    except BaseException:
        _discard_staged(upload, plan)
        raise
    draft, staging = upload.result()
    return draft, staging, parity


def _discard_staged(upload: Any, plan: Callable[[], ExportPlan]) -> None:
    """Waits for a running stage and removes what it uploaded."""
    try:
        _draft, staging = upload.result()
    except BaseException:  # noqa: BLE001 - it cleaned up after itself; the caller's error wins
        return
    if staging is None:
        return
    resolved = plan()
    storage.cleanup_staging(
        storage.Destination.parse(resolved.destination, resolved.storage_options), staging
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What publish did: the version, the versions pruned, and problems after publishing.

    A failure once the version is visible (retention, and in the flow the event
    and the artifact) does not undo the publish: it is a warning here, and the
    export still reports ``published``.
    """

    published: storage.Published
    pruned: list[int]
    warnings: tuple[str, ...] = ()
    reused: bool = False  # a retry found this build already published
    manifest: mf.Manifest | None = None  # as published (None when a retry reused one)


def publish_version(
    build_dir: str,
    staging: storage.Staged | None,
    plan: ExportPlan,
    draft: mf.Manifest,
    parity: ParityReport | None,
    keep_versions: int | None = None,
    build_id: str | None = None,
    retried: bool = False,
    lineage: Mapping[str, Any] | None = None,
    signing_key: Callable[[], Any] | None = None,
) -> Outcome:
    """Writes the final manifest, makes the version visible, prunes old versions.

    ``signing_key()`` (resolved only now: a Prefect Secret is loaded here) gives the key
    that signs the manifest for the version's number once it is claimed; the manifest
    records the key's fingerprint as ``signed_by`` (see ``artifacts.signing``).

    ``build_id`` names this export (stable across retries of one Prefect run); it is
    recorded in the claim and the manifest. A retried publish (``retried``, e.g. a
    Prefect task or flow run on its second attempt) that finds a complete version
    with its own build id returns that version instead of publishing a second copy;
    a first attempt skips the search (it reads one manifest per version).
    """
    dest = storage.Destination.parse(plan.destination, plan.storage_options)
    if retried and build_id and plan.timestamped:
        version = find_published_build(dest, build_id)
        if version is not None:
            published = storage.Published(dest.child_uri(str(version)), version)
            return Outcome(published, [], reused=True)
    extra = {**dict(draft.extra), **({"build_id": build_id} if build_id else {})}
    if plan.inputs.casts:  # what clients send differs from what the model takes
        extra["input_casts"] = plan.inputs.cast_record()
    if lineage is not None:
        extra["lineage"] = dict(lineage)
    key = signing.load_private_key(signing_key()) if signing_key is not None else None
    if key is not None:
        extra["signed_by"] = signing.fingerprint(key)
    final = dataclasses.replace(draft, parity=parity.to_dict() if parity else None, extra=extra)
    mf.write_manifest(build_dir, final)
    seal = _sealer(key, None if plan.timestamped else signing.folder_version(dest.path))
    published = storage.publish(build_dir, dest, plan.timestamped, staging, build_id, seal)
    pruned: list[int] = []
    warnings: list[str] = []
    if keep_versions and plan.timestamped:
        try:
            pruned = storage.prune_versions(dest, keep_versions, protect=published.version)
        except ExportError as exc:  # the new version is visible and complete
            warnings.append(
                f"Version {published.version} is published, but retention failed: {exc}"
            )
    return Outcome(published, pruned, tuple(warnings), manifest=final)


def _sealer(key: Any, fixed_version: int | None) -> storage.Seal | None:
    """Signs the build's manifest for the version being published; with
    ``timestamped=False`` for the number the target folder's name stands for, if any."""
    if key is None:
        return None

    def seal(folder: str, version: int | None) -> None:
        signing.write_signature(folder, fixed_version if version is None else version, key)

    return seal


def find_published_build(dest: storage.Destination, build_id: str) -> int | None:
    """The complete version whose manifest records ``build_id``, newest first."""
    dest.fs.invalidate_cache(dest.path)
    for version in sorted(dest.versions(), reverse=True):
        try:
            data = dest.fs.cat_file(dest.join(str(version), c.MANIFEST))
        except FileNotFoundError:
            continue  # incomplete (or being pruned): not a publish to reuse
        try:
            if json.loads(data).get("build_id") == build_id:
                return version
        except ValueError:
            continue
    return None
