"""clone-per-mode → trace → write-checkpoint → write-proto, holding one clone at a time.

The serving clone is cloned, traced and built into its MetaGraph, then freed before
the next clone exists; one compiled clone then serves eval (traced first, exactly as
cloned) and train, the checkpoint is written from it, and it is freed with its
graphs. ``export_core.sequence`` runs each of these as a step.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from export_core import constants as c
from export_core.model.shared_state import optimizer_state
from export_core.steps.clone import clone_for_mode
from export_core.steps.trace import TracedMode, trace_serve, trace_supervised
from export_core.steps.validate import ExportPlan
from export_core.steps.write import (
    build_meta_graph,
    check_same_layout,
    layout,
    write_checkpoint_of,
    write_saved_model,
)
from export_core.tf_internals.heap import release_gradients

# A full collection costs about 0.2 s whatever the model (it walks every object
# TensorFlow and Keras hold): it runs only when a clone held more than this.
RELEASE_THRESHOLD = 32 * 2**20


class ModeBuilder:
    """Builds the plan's MetaGraphs and checkpoint; holds at most one clone at a time."""

    def __init__(
        self, model: keras.Model, plan: ExportPlan, custom_objects: Mapping[str, Any] | None
    ) -> None:
        self.model, self.plan, self.custom_objects = model, plan, custom_objects
        self.clone: keras.Model | None = None
        self.traced: dict[str, TracedMode] = {}
        self.built: dict[str, Any] = {}
        self.layouts: list[tuple[str, dict]] = []
        self.predictions: tuple = ()

    def groups(self) -> list[tuple[str, ...]]:
        """The modes each clone serves: serve's own; then eval (first) and train."""
        supervised = [m for m in self.plan.modes if m != c.SERVE]
        ordered = tuple(sorted(supervised, key=lambda m: m != c.EVAL))
        return [(c.SERVE,), ordered] if ordered else [(c.SERVE,)]

    def clone_for(self, group: tuple[str, ...]) -> None:
        """clone-per-mode: the clone of one group (a compiled one for train and eval)."""
        mode = c.TRAIN if c.TRAIN in group else group[0]
        self.clone = clone_for_mode(self.model, self.plan, mode, self.custom_objects)

    def trace(self, mode: str) -> None:
        if mode == c.SERVE:
            self.traced[mode] = trace_serve(self.clone, self.plan)
            self.predictions = self.traced[mode].outputs
        else:
            self.traced[mode] = trace_supervised(self.clone, self.plan, mode, self.predictions)

    def build_meta_graphs(self) -> None:
        """write-proto, first part: each traced mode's MetaGraphDef (in memory)."""
        for mode, traced in self.traced.items():
            if mode not in self.built:
                self.built[mode] = build_meta_graph(traced)
                self.layouts.append((mode, layout(traced)))

    def holds_every_variable(self) -> bool:
        """Whether the current clone's graphs hold every group the checkpoint needs."""
        return self.clone is not None and set(self.traced) == set(self.groups()[-1])

    def write_checkpoint(self, build_dir: str) -> tuple[str, ...]:
        """write-checkpoint: from the richest traced mode (train, if exported)."""
        richest = self.traced.get(c.TRAIN) or next(iter(self.traced.values()))
        check_same_layout(layout(richest), richest.mode, self.layouts)
        return write_checkpoint_of(richest, build_dir).files

    def release(self) -> None:
        """Frees the clone and the graphs traced from it (Keras models hold reference
        cycles: a collection returns their memory when it is worth one)."""
        held = _held_bytes(self.clone) if self.plan.cloneable else 0
        supervised = any(m != c.SERVE for m in self.traced)
        self.clone = None
        self.traced.clear()
        if supervised:
            release_gradients()  # what else holds the traced train graph (see heap)
        if held > RELEASE_THRESHOLD:
            gc.collect()

    def write_saved_model(self, build_dir: str) -> tuple[str, ...]:
        """write-proto, last part: ``saved_model.pb`` with a MetaGraph per mode, in plan order."""
        built = [self.built.pop(m) for m in self.plan.modes]
        return write_saved_model(built, self.plan, build_dir).files


def _held_bytes(model: keras.Model | None) -> int:
    """Bytes of the variables (and optimizer variables) a clone holds."""
    if model is None:
        return 0
    variables = list(model.weights)
    if getattr(model, "optimizer", None) is not None:
        variables += optimizer_state(model)
    seen, total = set(), 0
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            total += int(np.prod(variable.shape)) * _itemsize(variable.dtype)
    return total


def _itemsize(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:  # e.g. bfloat16 without ml_dtypes registered: count 2 bytes
        return 2
