"""Steps 4 and 5, write-checkpoint and write-proto.

TensorFlow 2 writes one MetaGraph per SavedModel. We build one MetaGraphDef per
mode with TensorFlow's own SavedModel builder (without its checkpoint), retag it,
and merge them into a single ``SavedModel`` proto next to one checkpoint that
every MetaGraph's restore op reads (the keys agree, see ``trace``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import variable_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow.python.framework import ops
from tensorflow.python.saved_model import constants as saved_model_constants

# TensorFlow exposes no public way to build a MetaGraphDef without also writing a
# checkpoint; this is the function tf.saved_model.save itself calls (TF 2.21).
from tensorflow.python.saved_model import save as tf_save

from export_core import constants as c
from export_core import saver
from export_core.errors import ExportError
from export_core.trace import TracedMode, TracedModes
from export_core.validate import ExportPlan

GROUPS = (c.MODEL_VARIABLES, c.OPTIMIZER_VARIABLES, c.METRIC_VARIABLES)


@dataclass(frozen=True)
class WrittenFiles:
    """Relative paths written into the build folder by a step."""

    files: tuple[str, ...]


def write_checkpoint(traced: TracedModes, build_dir: str) -> WrittenFiles:
    """Writes ``variables/variables.{index,data-*}`` once, for every MetaGraph.

    The richest mode (train, if present) holds every variable group; the other
    modes' groups must have the same layout, which is checked here.
    """
    modes = list(traced)
    richest = max(modes, key=lambda m: len(_groups(m)))
    _check_same_layout(richest, modes)
    prefix = os.path.join(build_dir, c.VARIABLES_PREFIX)
    tf.train.Checkpoint(**_groups(richest)).write(prefix)
    files = sorted(
        f"{c.VARIABLES_DIR}/{name}" for name in os.listdir(os.path.join(build_dir, c.VARIABLES_DIR))
    )
    return WrittenFiles(tuple(files))


def _groups(traced: TracedMode) -> dict[str, list]:
    return {g: list(getattr(traced.root, g)) for g in GROUPS if hasattr(traced.root, g)}


def _check_same_layout(reference: TracedMode, modes: list[TracedMode]) -> None:
    ref = _groups(reference)
    for mode in modes:
        for group, variables in _groups(mode).items():
            if [tuple(v.shape) for v in variables] != [tuple(v.shape) for v in ref[group]]:
                raise ExportError(
                    f"The '{mode.mode}' graph's {group} differ from the "
                    f"'{reference.mode}' graph's; their clones are not identical."
                )


def write_proto(traced: TracedModes, plan: ExportPlan, build_dir: str) -> WrittenFiles:
    """Writes the merged ``saved_model.pb`` (or ``.pbtxt``) and the model's JSON."""
    written = []
    if plan.model_json is not None:
        os.makedirs(os.path.join(build_dir, c.ASSETS_DIR), exist_ok=True)
        with open(os.path.join(build_dir, c.MODEL_JSON), "w", encoding="utf-8") as f:
            f.write(plan.model_json)
        written.append(c.MODEL_JSON)
    saved_model = saved_model_pb2.SavedModel(
        saved_model_schema_version=saved_model_constants.SAVED_MODEL_SCHEMA_VERSION
    )
    for mode in traced:
        saved_model.meta_graphs.add().CopyFrom(build_meta_graph(mode))
    name = c.SAVED_MODEL_PBTXT if plan.as_text else c.SAVED_MODEL_PB
    # Written last: its presence is what serving systems take as "complete".
    path = os.path.join(build_dir, name)
    if plan.as_text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text_format.MessageToString(saved_model))
    else:
        with open(path, "wb") as f:
            f.write(saved_model.SerializeToString(deterministic=True))
    written.append(name)
    return WrittenFiles(tuple(written))


def build_meta_graph(traced: TracedMode) -> meta_graph_pb2.MetaGraphDef:
    """One mode's MetaGraphDef: its tags, its signature(s), its global step."""
    key = c.SIGNATURE_KEYS[traced.mode]
    meta_graph = meta_graph_pb2.MetaGraphDef()
    groups = _groups(traced)
    # TensorFlow's own save/restore functions are kept only when variables share a
    # name and cannot be told apart in the graph (see ``saver``).
    own_saver = saver.has_unique_names(groups)
    options = tf.saved_model.SaveOptions(experimental_skip_saver=own_saver)
    _meta, graph, *_ = tf_save._build_meta_graph(  # noqa: SLF001 - see import note
        traced.root, {key: traced.function}, options, meta_graph
    )
    ops.dismantle_graph(graph)
    if own_saver:
        saver.add_saver(meta_graph, groups)
    meta_graph.meta_info_def.ClearField("tags")
    meta_graph.meta_info_def.tags.extend(c.TAGS[traced.mode])
    meta_graph.signature_def[key].method_name = c.METHOD_NAMES[traced.mode]
    if traced.global_step is not None:
        _add_global_step(meta_graph, traced.global_step)
    if traced.mode == c.TRAIN:
        train_op = meta_graph.signature_def[c.TRAIN_OP_SIGNATURE_KEY]
        train_op.CopyFrom(meta_graph.signature_def[key])
        train_op.outputs[c.TRAIN_OP_SIGNATURE_KEY].CopyFrom(train_op.outputs[c.LOSS_KEY])
    return meta_graph


def _add_global_step(meta_graph: meta_graph_pb2.MetaGraphDef, variable: tf.Variable) -> None:
    """Points the TF1 ``global_step`` collection at the optimizer's iteration counter.

    The exported graph re-creates each variable as a ``VarHandleOp`` whose
    ``shared_name`` is the eager variable's, plus a ``<name>/Read/ReadVariableOp``.
    """
    shared = saver.shared_name(variable)
    handles = [
        n.name
        for n in meta_graph.graph_def.node
        if n.op == "VarHandleOp" and n.attr["shared_name"].s == shared
    ]
    if len(handles) != 1:
        raise ExportError(f"Cannot locate the global step variable in the graph ({handles}).")
    op = handles[0]
    names = {n.name for n in meta_graph.graph_def.node}
    read = f"{op}/Read/ReadVariableOp"
    definition = variable_pb2.VariableDef(
        variable_name=f"{op}:0",
        initializer_name=op,
        snapshot_name=f"{read}:0" if read in names else "",
        is_resource=True,
        trainable=False,
    )
    collection = meta_graph.collection_def[c.GLOBAL_STEP_COLLECTION]
    collection.bytes_list.value.append(definition.SerializeToString())
