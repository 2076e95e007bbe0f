"""TF1 details of each MetaGraphDef that TensorFlow 2's builder leaves out.

TF1 tools (the session loader, ``import_meta_graph``, ``load_v1_in_v2`` behind
``tf.saved_model.load(path, tags=...)`` on a multi-MetaGraph SavedModel, and the
freezers built on them: ``convert_variables_to_constants``, tf2onnx) find
variables through the ``variables``/``trainable_variables`` collections, the
global step through ``global_step``, and asset paths as Consts they feed.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import variable_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from export_core import constants as c
from export_core.errors import ExportError
from export_core.tf_internals import saver


def add_variable_collections(
    meta_graph: meta_graph_pb2.MetaGraphDef, variables: list[tuple[str, bool]]
) -> None:
    """Lists every variable in ``variables`` (and ``trainable_variables``).

    With several MetaGraphs, ``tf.saved_model.load(path, tags=["serve"])``
    imports the graph the TF1 way and makes real variables only of those listed
    here; without them the serving function keeps raw ``VarHandleOp`` reads,
    which tf2onnx and every other freezer built on that loader cannot fold.
    """
    names = {n.name for n in meta_graph.graph_def.node}
    for op, trainable in variables:
        definition = _variable_def(names, op, trainable)
        meta_graph.collection_def["variables"].bytes_list.value.append(definition)
        if trainable:
            meta_graph.collection_def["trainable_variables"].bytes_list.value.append(definition)


def _variable_def(names: set[str], op: str, trainable: bool) -> bytes:
    """A serialized VariableDef for the resource variable whose handle is ``op``.

    The handle op stands in as the initializer: every value comes from the
    checkpoint, so running it (as ``global_variables_initializer`` would) changes
    nothing. ``import_meta_graph`` takes two entries for one variable only when
    their bytes are equal, so the global step's entry is built the same way.
    """
    read = f"{op}/Read/ReadVariableOp"
    return variable_pb2.VariableDef(
        variable_name=f"{op}:0",
        initializer_name=op,
        snapshot_name=f"{read}:0" if read in names else "",
        is_resource=True,
        trainable=trainable,
    ).SerializeToString()


def asset_paths_as_constants(meta_graph: meta_graph_pb2.MetaGraphDef) -> None:
    """Turns each asset path Placeholder into a Const the loaders feed.

    TensorFlow 2's builder reads an asset's path from a Placeholder that only its
    object-graph loader knows to feed. In a SavedModel with several MetaGraphs,
    ``tf.saved_model.load(path, tags=...)`` takes the TF1 route, which turns every
    signature, ``__saved_model_init_op`` included, into a pruned function and
    refuses one that depends on an unfed Placeholder. TF1's own builder writes the
    asset path as a Const holding the file name, which every TF1 loader feeds with
    the file's real path (``asset_file_def``); so does this.
    """
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    for asset in meta_graph.asset_file_def:
        node = nodes.get(asset.tensor_info.name.split(":")[0])
        if node is None or node.op != "Placeholder":
            continue
        node.op = "Const"
        node.attr.pop("shape", None)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(asset.filename.encode()))


def add_global_step(meta_graph: meta_graph_pb2.MetaGraphDef, variable: tf.Variable) -> None:
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
    names = {n.name for n in meta_graph.graph_def.node}
    definition = _variable_def(names, handles[0], trainable=False)
    meta_graph.collection_def[c.GLOBAL_STEP_COLLECTION].bytes_list.value.append(definition)
