"""Checking a MetaGraph's restore against the checkpoint's index, without reading it.

Every MetaGraph of an export restores from the one checkpoint in ``variables/``.
The serving MetaGraph's restore is run and its predictions compared, which reads
the checkpoint's bytes; restoring the train MetaGraph as well would read them all
again with the optimizer's slots (three times the weights for Adam), hold them at
once, only to show that TensorFlow reads back what it has just written (and the
upload was confirmed by checksum). What a train or eval MetaGraph adds
is its own list of what to restore, and that is checked here: each key its
``RestoreV2`` names exists in the checkpoint with the dtype it asks for and the
shape of the variable it assigns. The index (``variables.index``) says all of it.

Only restores built by ``saver.add_saver`` (plain ``RestoreV2`` → ``AssignVariableOp``
nodes) can be read this way; for TensorFlow's own traced restore function
``restore_plan`` returns None and the caller runs the restore instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from export_core.errors import VerificationError


@dataclass(frozen=True)
class Restored:
    """One variable a restore op assigns: its checkpoint key, dtype and shape."""

    key: str
    dtype: tf.DType  # what RestoreV2 reads
    variable_dtype: tf.DType  # what the variable it assigns holds
    shape: tuple[int | None, ...] | None  # None: the variable's shape is unknown


def restore_plan(meta_graph: meta_graph_pb2.MetaGraphDef) -> list[Restored] | None:
    """What the MetaGraph's restore op assigns; [] without a saver, None when the
    restore is not made of plain nodes (see the module docstring)."""
    restore_op = meta_graph.saver_def.restore_op_name
    if not restore_op:
        return []
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    root = nodes.get(restore_op)
    if root is None or root.op != "NoOp":
        return None
    plan = []
    for control in root.input:
        assign = nodes.get(control.lstrip("^"))
        if assign is None or assign.op != "AssignVariableOp" or len(assign.input) < 2:
            return None
        handle, value = nodes.get(assign.input[0]), assign.input[1]
        restore_name, _, index = value.partition(":")
        restore = nodes.get(restore_name)
        if handle is None or handle.op != "VarHandleOp" or restore is None:
            return None
        if restore.op != "RestoreV2":
            return None
        keys = nodes.get(restore.input[1])
        if keys is None or keys.op != "Const":
            return None
        position = int(index or 0)
        key = tf.make_ndarray(keys.attr["value"].tensor)[position].decode()
        dtype = tf.as_dtype(restore.attr["dtypes"].list.type[position])
        shape = tf.TensorShape(handle.attr["shape"].shape)
        dims = tuple(shape.as_list()) if shape.rank is not None else None
        plan.append(Restored(key, dtype, tf.as_dtype(handle.attr["dtype"].type), dims))
    return plan


def check_against_checkpoint(plan: list[Restored], saved_model_dir: str, tag: str) -> None:
    """Checks every restored key against ``variables/variables.index``.

    Raises:
        VerificationError: A key is missing, or its dtype or shape differs.
    """
    if not plan:
        return
    prefix = os.path.join(saved_model_dir, "variables", "variables")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as exc:
        raise VerificationError(
            f"The '{tag}' MetaGraph restores {len(plan)} variables, but the checkpoint "
            f"of {saved_model_dir} cannot be read: {exc}"
        ) from exc
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    for item in plan:
        where = f"The '{tag}' MetaGraph of {saved_model_dir} restores '{item.key}'"
        if item.key not in shapes:
            raise VerificationError(f"{where}, which the checkpoint does not hold.")
        if not dtypes[item.key] == item.dtype == item.variable_dtype:
            raise VerificationError(
                f"{where} as {item.dtype.name} into a {item.variable_dtype.name} variable; "
                f"the checkpoint holds {dtypes[item.key].name}."
            )
        stored = tuple(shapes[item.key])
        if item.shape is not None and not _compatible(item.shape, stored):
            raise VerificationError(
                f"{where} into a variable of shape {list(item.shape)}; the checkpoint "
                f"holds shape {list(stored)}."
            )


def _compatible(wanted: tuple[int | None, ...], stored: tuple[int, ...]) -> bool:
    return len(wanted) == len(stored) and all(
        w is None or w == s for w, s in zip(wanted, stored, strict=True)
    )
