"""The export, step by step: the one sequence both the Python API and the Prefect flow run.

    validate → golden → clone-per-mode → trace → write-checkpoint → write-proto
    → signature-gate → stage ∥ verify-reload → publish

1. **validate** the model, its signature, the options and the destination's backend
   (``steps.validate``); nothing is written when it fails.
2. **golden**: the model's outputs on the inputs verification will feed
   (``steps.golden``), computed first, while no clone is held.
3. **clone-per-mode → trace → write-proto**, one clone at a time: the serving clone
   is cloned, traced and built into its MetaGraph, then freed; one compiled clone
   then serves eval (traced first, as cloned) and train. Clones share the model's
   variables (``steps.clone``); nothing runs them.
4. **write-checkpoint** from the compiled clone (every variable group), before it is
   freed with the graphs traced from it (and TensorFlow's gradient registrations,
   see ``tf_internals.heap``).
5. **write-proto**: the SavedModel proto holding a MetaGraph per mode, written last,
   then ``golden.npz`` and TF Serving's warm-up requests.
6. **signature-gate**: the serving signatures against the version they replace.
7. **stage ∥ verify-reload**: the upload to staging runs on the side (a thread, or a
   Prefect task future) while verification loads the build with TensorFlow's
   loaders and checks train and eval against Keras; either failing discards both.
8. **publish**: claim the version, sign its manifest for that number when given a
   key, make it visible (``saved_model.pb`` after the rest, the manifest last), then
   retention.

Whatever happens, the local build and anything staged are removed at the end.

The steps run through a ``StepRunner``: this module's own calls each step in turn;
the Prefect flow passes one that runs each as a task of the same name (retried only
when it does I/O), so both entry points run the same steps in the same order, with
the same clones and the same memory bound.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from export_core import storage
from export_core.artifacts.golden import write_golden
from export_core.artifacts.lineage import collect_lineage
from export_core.artifacts.warmup import write_warmup
from export_core.request import ExportRequest, ExportResult
from export_core.steps import publish, verify
from export_core.steps.build import ModeBuilder
from export_core.steps.golden import golden_for
from export_core.steps.validate import ExportPlan, validate_export
from export_core.tf_internals.heap import export_scope

log = logging.getLogger(__name__)
T = TypeVar("T")
STEPS = (
    "validate",
    "golden",
    "clone-per-mode",
    "trace",
    "write-checkpoint",
    "write-proto",
    "signature-gate",
    "stage",
    "verify-reload",
    "publish",
)
STORAGE_STEPS = frozenset({"validate", "signature-gate", "stage", "publish"})


class StepRunner:
    """Runs the steps of ``run_steps``: this one calls each in turn, in this process.

    Subclasses wrap each call (the Prefect flow's runs each as a task of the step's
    name); ``submit`` starts a step on the side and returns something with
    ``result()``; ``attempt`` is 1, or the retry a step is on.
    """

    def run(self, name: str, step: Callable[[], T]) -> T:
        return step()

    def submit(self, name: str, step: Callable[[], T]) -> Any:
        pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        future: Future = pool.submit(step)
        pool.shutdown(wait=False)
        return future

    def attempt(self) -> int:
        return 1

    def progress(self, done: int, total: int) -> None:
        """Called as the upload goes (bytes done of total); the CLI's bar listens to
        ``storage.progress_listener`` instead."""

    def log(self, level: int, message: str) -> None:
        """What the steps tell the user (the Prefect runner: into the run's logs)."""
        log.log(level, "%s", message)


@export_scope()
def run_steps(request: ExportRequest, runner: StepRunner | None = None) -> ExportResult:
    """Runs the steps listed in the module docstring, in that order, through ``runner``.

    Raises:
        ExportError: The step that failed says what was wrong; nothing was published.
    """
    export = _Export(request, runner or StepRunner())
    try:
        export.validate()
        export.golden()
        export.build()
        export.gate()
        export.stage_and_verify()
        export.publish()
    finally:
        export.clean_up()
    return export.result()


class _Export:
    """One export's state as it moves through the steps; freed as it goes."""

    def __init__(self, request: ExportRequest, runner: StepRunner) -> None:
        self.request, self.runner = request, runner
        self.seconds: dict[str, float] = {}
        self.build_id = request.build_id or uuid.uuid4().hex
        self.plan: ExportPlan | None = None
        self.golden_data = None
        self.build_dir: str | None = None
        self.staging = None
        self.draft = self.parity = self.diff = self.outcome = self.lineage = None

    def step(self, name: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return self.runner.run(name, call)
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def with_storage(self) -> ExportPlan:
        """The plan with the real storage options, for one step that touches storage."""
        return dataclasses.replace(self.plan, storage_options=dict(self.request.storage()))

    def validate(self) -> None:
        r = self.request

        def check() -> ExportPlan:
            plan = validate_export(
                r.model, r.destination, custom_objects=r.custom_objects,
                input_signature=r.input_signature, serving_only=r.serving_only,
                as_text=r.as_text, timestamped=r.timestamped, storage_options=r.storage(),
                modes=r.modes, sample_inputs=r.sample_inputs, compare_label=r.compare_label,
                cast_inputs=r.cast_inputs,
            )  # fmt: skip
            return dataclasses.replace(plan, storage_options={})  # no secrets travel on

        self.plan = self.step("validate", check)

    def golden(self) -> None:
        """The model's outputs on the golden inputs, while no clone is held (an eager
        Functional call keeps every layer's activations until it returns)."""
        r = self.request
        if r.verify or r.warmup:
            self.golden_data = self.step(
                "golden", lambda: golden_for(r.model, self.plan.inputs, r.sample_inputs)
            )

    def build(self) -> None:
        """clone-per-mode → trace → write-checkpoint → write-proto, one clone at a time."""
        # Only a local destination's path matters here (a remote one builds in a private
        # temp folder): a remote filesystem is not made, so no credentials are looked up
        # (gcsfs without options probes the GCE metadata server for ~15 s off GCE).
        local = storage.is_local_uri(self.plan.destination)
        dest = storage.Destination.parse(self.plan.destination) if local else None
        builder = ModeBuilder(self.request.model, self.plan, self.request.custom_objects)
        for group in builder.groups():
            self.step("clone-per-mode", lambda g=group: builder.clone_for(g))
            for mode in group:
                started = time.perf_counter()
                self.step("trace", lambda m=mode: builder.trace(m))
                self.seconds[f"trace:{mode}"] = time.perf_counter() - started
            self.step("write-proto", builder.build_meta_graphs)
            if builder.holds_every_variable():  # every mode traced: only now a build folder
                self.build_dir = storage.new_build_dir(dest, self.plan.timestamped)
                self.step("write-checkpoint", lambda: builder.write_checkpoint(self.build_dir))
            builder.release()
        self.step("write-proto", lambda: self._write_proto(builder))

    def _write_proto(self, builder: ModeBuilder) -> None:
        builder.write_saved_model(self.build_dir)
        if self.golden_data is not None:
            write_golden(self.build_dir, self.golden_data)
            self.golden_data = None
        if self.request.warmup:
            write_warmup(self.build_dir, self.plan.inputs)

    def gate(self) -> None:
        r = self.request
        self.diff = self.step(
            "signature-gate",
            lambda: publish.gate_signatures(
                self.build_dir, self.with_storage(), r.compare_label, r.allow_breaking_signature
            ),
        )

    def stage_and_verify(self) -> None:
        r = self.request
        upload = self.runner.submit(
            "stage",
            lambda: publish.stage_build(
                self.build_dir, self.with_storage(), r.source, self.runner.progress, self.build_id
            ),
        )

        def check() -> verify.ParityReport | None:
            if not r.verify:
                return None
            return publish.verify_build(
                self.build_dir, r.model, self.plan, r.sample_inputs,
                r.verify == verify.FULL, r.custom_objects,
            )  # fmt: skip

        started = time.perf_counter()
        self.draft, self.staging, self.parity = publish.stage_while_verifying(
            upload, lambda: self.step("verify-reload", check), self.with_storage
        )
        # what the upload took beyond verification (they overlap)
        waited = time.perf_counter() - started - self.seconds.get("verify-reload", 0.0)
        self.seconds["stage"] = max(0.0, waited)
        if self.parity is not None and self.parity.training:
            self.seconds["verify:training"] = self.parity.training["seconds"]

    def publish(self) -> None:
        r = self.request
        parent = self.diff.version if self.diff else None
        self.lineage = collect_lineage(r.source, r.metadata, parent, r.run_lineage)

        def make_visible() -> publish.Outcome:
            return publish.publish_version(
                self.build_dir, self.staging, self.with_storage(), self.draft, self.parity,
                r.keep_versions, self.build_id, self.runner.attempt() > 1, self.lineage,
                r.signing_key,
            )  # fmt: skip

        self.outcome = self.step("publish", make_visible)
        if self.outcome.reused:
            self.runner.log(
                logging.INFO,
                f"Build {self.build_id} was already published as {self.outcome.published.path}",
            )
        for warning in self.outcome.warnings:
            self.runner.log(logging.WARNING, warning)

    def clean_up(self) -> None:
        """The local build and anything staged, however the export ended (a plain call:
        it must run while the run is interrupted too)."""
        if self.build_dir is not None:
            storage.remove_build_dir(self.build_dir)
        if self.staging is not None:  # only now the credentials: a block is loaded here
            dest = storage.Destination.parse(self.plan.destination, self.request.storage())
            storage.cleanup_staging(dest, self.staging)

    def result(self) -> ExportResult:
        published = self.outcome.published
        return ExportResult(
            published.path,
            published.version,
            self.plan.modes,
            self.parity,
            {name: round(s, 4) for name, s in self.seconds.items()},
            self.outcome.warnings,
            self.outcome.manifest or self.draft,
            tuple(self.outcome.pruned),
            self.diff.to_dict() if self.diff else None,
            self.lineage,
        )


__all__ = ["STEPS", "ExportRequest", "ExportResult", "StepRunner", "run_steps"]
