"""The TF1 save and restore ops of a MetaGraph, written as plain graph nodes.

A TF1 loader (``tf.compat.v1.saved_model.load``, ``saved_model_cli``, TensorFlow
Serving) restores variables by running ``saver_def.restore_op_name`` with the
checkpoint prefix fed to ``saver_def.filename_tensor_name``. TensorFlow 2's
SavedModel builder produces these ops by tracing a save and a restore function
over every variable, which is most of the cost of building a MetaGraph (ResNet50
with Adam: about 7 of 10 s) and makes the loader instantiate those functions.

Here they are the nodes ``tf.compat.v1.train.Saver`` (V2 format, unsharded) would
build: one ``RestoreV2`` feeding an ``AssignVariableOp`` per variable, and one
``SaveV2`` over a ``ReadVariableOp`` per variable. The keys are the checkpoint's own
(``<group>/<index>/.ATTRIBUTES/VARIABLE_VALUE``, as ``tf.train.Checkpoint`` wrote
them). The save op writes a name-based checkpoint with those keys, as TF1's
``Saver`` did; it has no object graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2, node_def_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saver_pb2

from export_core.errors import ExportError
from export_core.tf_internals.tf_private import shared_name, stripped_op_list

CPU = "/device:CPU:0"


def checkpoint_key(group: str, index: int) -> str:
    """The key ``tf.train.Checkpoint(**groups).write`` gives a variable in a group."""
    return f"{group}/{index}/.ATTRIBUTES/VARIABLE_VALUE"


def has_unique_names(groups: Mapping[str, Sequence[tf.Variable]]) -> bool:
    """Whether every variable can be found in the exported graph by shared name.

    The builder names each graph copy after the eager variable; two eager
    variables with one name would make the lookup ambiguous.
    """
    names = [shared_name(v) for variables in groups.values() for v in variables]
    return len(names) == len(set(names))


def add_saver(
    meta_graph: meta_graph_pb2.MetaGraphDef, groups: Mapping[str, Sequence[tf.Variable]]
) -> None:
    """Adds save/restore nodes for ``groups`` and points ``saver_def`` at them.

    A model without variables gets neither (as with TF1's ``Saver``).

    Raises:
        ExportError: A variable has no single ``VarHandleOp`` in the graph.
    """
    graph = meta_graph.graph_def
    keys, names, dtypes = _variables_in(graph, groups)
    if not keys:
        return  # nothing to restore: TF1 loaders skip restoring without a saver_def
    scope = _free_scope(graph, "save")
    filename = f"{scope}/filename"
    graph.node.extend(
        [
            _node(filename, "Placeholder", [], dtype=_type(types_pb2.DT_STRING), shape=_scalar()),
            _const(f"{scope}/tensor_names", keys),
            _const(f"{scope}/shape_and_slices", [""] * len(keys)),
        ]
    )
    specs = [filename, f"{scope}/tensor_names", f"{scope}/shape_and_slices"]
    reads = _add_restore(graph, scope, specs, names, dtypes)
    save = f"{scope}/SaveV2"
    graph.node.append(_node(save, "SaveV2", specs + reads, CPU, dtypes=_types(dtypes)))
    done = _node(
        f"{scope}/control_dependency",
        "Identity",
        [filename, f"^{save}"],
        T=_type(types_pb2.DT_STRING),
    )
    graph.node.append(done)
    meta_graph.saver_def.CopyFrom(
        saver_pb2.SaverDef(
            filename_tensor_name=f"{filename}:0",
            save_tensor_name=f"{scope}/control_dependency:0",
            restore_op_name=f"{scope}/restore_all",
            max_to_keep=5,
            keep_checkpoint_every_n_hours=10000.0,
            version=saver_pb2.SaverDef.V2,
        )
    )
    meta_graph.meta_info_def.stripped_op_list.CopyFrom(stripped_op_list(graph))


def _variables_in(graph: Any, groups: Mapping[str, Sequence[tf.Variable]]):
    """Each variable's checkpoint key, its ``VarHandleOp`` in ``graph`` and its dtype."""
    handles: dict[bytes, list[str]] = {}
    for node in graph.node:
        if node.op == "VarHandleOp":
            handles.setdefault(node.attr["shared_name"].s, []).append(node.name)
    keys, names, dtypes = [], [], []
    for group, variables in groups.items():
        for index, variable in enumerate(variables):
            found = handles.get(shared_name(variable), [])
            if len(found) != 1:
                raise ExportError(
                    f"Cannot locate variable '{variable.name}' of {group} in the exported "
                    f"graph (found {found})."
                )
            keys.append(checkpoint_key(group, index))
            names.append(found[0])
            dtypes.append(variable.dtype.as_datatype_enum)
    return keys, names, dtypes


def _add_restore(
    graph: Any, scope: str, specs: list[str], names: list[str], dtypes: list[int]
) -> list[str]:
    """``RestoreV2`` → one ``AssignVariableOp`` per variable → ``restore_all``; returns the
    ``ReadVariableOp`` names the save op reads."""
    restore = f"{scope}/RestoreV2"
    graph.node.append(_node(restore, "RestoreV2", specs, CPU, dtypes=_types(dtypes)))
    assigns, reads = [], []
    for index, (handle, dtype) in enumerate(zip(names, dtypes, strict=True)):
        value = restore if index == 0 else f"{restore}:{index}"
        assign = _node(f"{scope}/Assign_{index}", "AssignVariableOp", [handle, value])
        assign.attr["dtype"].type = dtype
        read = _node(f"{scope}/Read_{index}", "ReadVariableOp", [handle])
        read.attr["dtype"].type = dtype
        assigns.append(assign)
        reads.append(read)
    graph.node.extend(assigns + reads)
    graph.node.append(_node(f"{scope}/restore_all", "NoOp", [f"^{a.name}" for a in assigns]))
    return [r.name for r in reads]


def _free_scope(graph, base: str) -> str:
    taken = {node.name.split("/", 1)[0] for node in graph.node}
    scope, n = base, 0
    while scope in taken:
        n += 1
        scope = f"{base}_{n}"
    return scope


def _node(name: str, op: str, inputs: list[str], device: str = "", **attrs):
    node = node_def_pb2.NodeDef(name=name, op=op, input=inputs, device=device)
    for key, value in attrs.items():
        node.attr[key].CopyFrom(value)
    return node


def _const(name: str, strings: list[str]) -> node_def_pb2.NodeDef:
    tensor = tf.make_tensor_proto(np.array([s.encode() for s in strings], dtype=object))
    return _node(
        name,
        "Const",
        [],
        CPU,
        dtype=_type(types_pb2.DT_STRING),
        value=attr_value_pb2.AttrValue(tensor=tensor),
    )


def _type(dtype: int) -> attr_value_pb2.AttrValue:
    return attr_value_pb2.AttrValue(type=dtype)


def _types(dtypes: list[int]) -> attr_value_pb2.AttrValue:
    return attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(type=dtypes))


def _scalar() -> attr_value_pb2.AttrValue:
    return attr_value_pb2.AttrValue(shape=tf.TensorShape([]).as_proto())
