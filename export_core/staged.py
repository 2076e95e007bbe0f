"""clone → trace → write, one clone at a time: what ``run_export`` runs.

The Prefect flow runs the steps one task at a time (``clone_per_mode``,
``trace_modes``, ``write_checkpoint``, ``write_proto``), and so holds every mode's
clone and graphs at once. Here each clone lives only as long as its own MetaGraphs
take to build: the serving clone is cloned, traced, built into its MetaGraph and
freed before the next clone is made; one compiled clone then serves train and
eval (eval traced first, on a clone in exactly the state its own clone would
have), and the checkpoint is written from it before it is freed. The result is
the same SavedModel: the same MetaGraphs in plan order, the same checkpoint keys
and values, the same layout check.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from typing import Any

import keras

from export_core import constants as c
from export_core.clone import ModeClones, clone_for_mode
from export_core.heap import release_gradients
from export_core.trace import TracedMode, trace_serve, trace_supervised
from export_core.validate import ExportPlan
from export_core.write import (
    WrittenFiles,
    build_meta_graph,
    check_same_layout,
    layout,
    write_checkpoint_of,
    write_saved_model,
)

RELEASE_THRESHOLD = 32 * 2**20


def build_staged(
    model: keras.Model,
    plan: ExportPlan,
    build_dir: Callable[[], str],
    custom_objects: Mapping[str, Any] | None,
    lap: Callable[[str], None],
) -> tuple[dict[str, float], WrittenFiles]:
    """Clones, traces and writes every mode of ``plan`` into ``build_dir()``.

    ``build_dir`` makes the folder; it is called once every mode has traced, so
    a model that cannot be cloned or traced leaves nothing behind.

    Calls ``lap`` after each step (``clone``, ``trace``, ``write_checkpoint``,
    ``write_proto``); their seconds add up over the stages. Returns the seconds
    each mode took to trace and the files written.
    """
    built: dict[str, Any] = {}
    layouts: list[tuple[str, dict]] = []
    trace_seconds: dict[str, float] = {}
    written: list[str] = []
    steps: dict[str, float] = {}

    def step(name: str, started: float) -> float:
        now = time.perf_counter()
        steps[name] = steps.get(name, 0.0) + now - started
        return now

    clock = time.perf_counter()
    clone = clone_for_mode(model, plan, c.SERVE, custom_objects)
    clock = step("clone", clock)
    serve = trace_serve(clone, plan)
    trace_seconds[c.SERVE] = time.perf_counter() - clock
    clock = step("trace", clock)
    built[c.SERVE] = build_meta_graph(serve)
    layouts.append((c.SERVE, layout(serve)))
    predictions = serve.outputs
    supervised = [m for m in plan.modes if m != c.SERVE]
    clock = step("write_proto", clock)
    if not supervised:
        check_same_layout(layout(serve), c.SERVE, layouts)
        written.extend(write_checkpoint_of(serve, build_dir()).files)
        clock = step("write_checkpoint", clock)
    held = _held_bytes(clone, plan)
    del clone, serve
    release_clones(held)
    clock = step("release_clones", clock)
    if supervised:
        clone = clone_for_mode(model, plan, supervised[0], custom_objects)
        clock = step("clone", clock)
        traced: dict[str, TracedMode] = {}
        # Eval first: its graph is traced from the clone exactly as cloned.
        for mode in sorted(supervised, key=lambda m: m != c.EVAL):
            traced[mode] = trace_supervised(clone, plan, mode, predictions)
            trace_seconds[mode] = time.perf_counter() - clock
            clock = step("trace", clock)
        for mode in supervised:
            built[mode] = build_meta_graph(traced[mode])
            layouts.append((mode, layout(traced[mode])))
        clock = step("write_proto", clock)
        richest = traced[supervised[0]]  # train if exported: every group
        check_same_layout(layout(richest), richest.mode, layouts)
        written.extend(write_checkpoint_of(richest, build_dir()).files)
        clock = step("write_checkpoint", clock)
        held = _held_bytes(clone, plan)
        del clone, traced, richest
        release_gradients()  # what else holds the traced train graph (see heap)
        release_clones(held)
        clock = step("release_clones", clock)
    files = write_saved_model([built.pop(m) for m in plan.modes], plan, build_dir())
    step("write_proto", clock)
    for name in ("clone", "trace", "write_checkpoint", "write_proto", "release_clones"):
        _report(lap, name, steps.get(name, 0.0))
    return {m: round(t, 4) for m, t in trace_seconds.items()}, WrittenFiles(
        tuple(written) + files.files
    )


def _report(lap: Callable[[str], None], name: str, seconds: float) -> None:
    lap(name)
    if hasattr(lap, "seconds"):
        lap.seconds[name] = round(seconds, 4)


def _held_bytes(clone: keras.Model, plan: ExportPlan) -> int:
    """Bytes of the variables a clone holds (0 for the caller's own model)."""
    return ModeClones({"clone": clone}).nbytes() if plan.cloneable else 0


def release_clones(clone_bytes: int) -> None:
    """Frees the clones and traced graphs the caller has let go of.

    Keras models hold reference cycles, so dropping the names is not enough; a
    collection returns their memory before the next step needs it. A full
    collection costs about 0.2 s whatever the model (it walks every object
    TensorFlow and Keras hold), so it only runs when the clones hold more than
    ``RELEASE_THRESHOLD`` bytes of variables.
    """
    if clone_bytes > RELEASE_THRESHOLD:
        gc.collect()
