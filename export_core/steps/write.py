"""Steps 4 and 5, write-checkpoint and write-proto.

TensorFlow 2 writes one MetaGraph per SavedModel. We build one MetaGraphDef per
mode with TensorFlow's own SavedModel builder (without its checkpoint), retag it,
and merge them into a single ``SavedModel`` proto next to one checkpoint that
every MetaGraph's restore op reads (the keys agree, see ``trace``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from export_core import constants as c
from export_core.errors import ExportError, writing_into
from export_core.steps.trace import TracedMode
from export_core.steps.validate import ExportPlan
from export_core.tf_internals import saver, shards, tf1_graph, tf_private

GROUPS = (c.MODEL_VARIABLES, c.OPTIMIZER_VARIABLES, c.METRIC_VARIABLES)


@dataclass(frozen=True)
class WrittenFiles:
    """Relative paths written into the build folder by a step."""

    files: tuple[str, ...]


def write_checkpoint_of(richest: TracedMode, build_dir: str) -> WrittenFiles:
    """Writes the checkpoint from one mode's variables (the one with every group)."""
    prefix = os.path.join(build_dir, c.VARIABLES_PREFIX)
    groups = _groups(richest)
    with writing_into(build_dir):
        tf.train.Checkpoint(**groups).write(prefix, options=shards.options(groups))
    files = sorted(
        f"{c.VARIABLES_DIR}/{name}" for name in os.listdir(os.path.join(build_dir, c.VARIABLES_DIR))
    )
    return WrittenFiles(tuple(files))


def _groups(traced: TracedMode) -> dict[str, list]:
    return {g: list(getattr(traced.root, g)) for g in GROUPS if hasattr(traced.root, g)}


def layout(traced: TracedMode) -> dict[str, list[tuple]]:
    """The shapes of a mode's variables, by group: what its restore op reads."""
    return {g: [tuple(v.shape) for v in variables] for g, variables in _groups(traced).items()}


def check_same_layout(
    reference: Mapping[str, list], name: str, modes: list[tuple[str, Mapping[str, list]]]
) -> None:
    """Raises ExportError unless every mode's groups match ``reference``'s."""
    for mode, groups in modes:
        for group, shapes in groups.items():
            if shapes != reference.get(group):
                raise ExportError(
                    f"The '{mode}' graph's {group} differ from the "
                    f"'{name}' graph's; their clones are not identical."
                )


def write_saved_model(
    built: list[tuple[meta_graph_pb2.MetaGraphDef, dict[str, str]]],
    plan: ExportPlan,
    build_dir: str,
) -> WrittenFiles:
    """Writes the merged ``saved_model.pb`` (or ``.pbtxt``) from MetaGraphs already built
    (``build_meta_graph``), in order, and the model's JSON config."""
    with writing_into(build_dir):
        return _write_saved_model(built, plan, build_dir)


def _write_saved_model(
    built: list[tuple[meta_graph_pb2.MetaGraphDef, dict[str, str]]],
    plan: ExportPlan,
    build_dir: str,
) -> WrittenFiles:
    written = []
    if plan.model_json is not None:
        os.makedirs(os.path.join(build_dir, c.ASSETS_DIR), exist_ok=True)
        with open(os.path.join(build_dir, c.MODEL_JSON), "w", encoding="utf-8") as f:
            f.write(plan.model_json)
        written.append(c.MODEL_JSON)
    saved_model = saved_model_pb2.SavedModel(
        saved_model_schema_version=tf_private.SAVED_MODEL_SCHEMA_VERSION
    )
    assets: dict[str, str] = {}
    for meta_graph, mode_assets in built:
        saved_model.meta_graphs.add().CopyFrom(meta_graph)
        assets.update(mode_assets)
    written.extend(copy_assets(assets, build_dir, taken=set(written)))
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


def copy_assets(assets: Mapping[str, str], build_dir: str, taken: set[str]) -> list[str]:
    """Copies the files the graphs read (vocabularies...) into ``assets/``.

    The MetaGraphs reference them relative to the SavedModel (``asset_file_def``),
    so the export keeps working once moved or published and the originals gone.

    Raises:
        ExportError: An asset is missing or its name collides with ours.
    """
    written = []
    for name, original in sorted((_text(k), _text(v)) for k, v in assets.items()):
        rel = f"{c.ASSETS_DIR}/{name}"
        if rel in taken:
            raise ExportError(
                f"The model reads an asset named '{name}', which collides with the "
                f"exporter's own {rel}; rename that file (e.g. the vocabulary file)."
            )
        target = os.path.join(build_dir, c.ASSETS_DIR, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            shutil.copyfile(original, target)
        except OSError as exc:
            raise ExportError(
                f"Cannot copy asset '{original}' (e.g. a vocabulary file a lookup layer "
                f"was built from) into the export: {exc}. Restore the file or rebuild the "
                "layer from an in-memory vocabulary."
            ) from exc
        written.append(rel)
    return written


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def build_meta_graph(traced: TracedMode) -> tuple[meta_graph_pb2.MetaGraphDef, dict[str, str]]:
    """One mode's MetaGraphDef (tags, signatures, global step) and its assets.

    The assets map a file name under ``assets/`` to the original file's path.
    """
    key = c.SIGNATURE_KEYS[traced.mode]
    groups = _groups(traced)
    # TensorFlow's own save/restore functions are kept only when variables share a
    # name and cannot be told apart in the graph (see ``saver``).
    own_saver = saver.has_unique_names(groups)
    options = tf.saved_model.SaveOptions(experimental_skip_saver=own_saver)
    meta_graph, assets, variables = tf_private.build_meta_graph(
        traced.root, {key: traced.function}, options
    )
    if own_saver:
        saver.add_saver(meta_graph, groups)
    meta_graph.meta_info_def.ClearField("tags")
    meta_graph.meta_info_def.tags.extend(c.TAGS[traced.mode])
    meta_graph.signature_def[key].method_name = c.METHOD_NAMES[traced.mode]
    tf1_graph.asset_paths_as_constants(meta_graph)
    tf1_graph.add_variable_collections(meta_graph, variables)
    if traced.global_step is not None:
        tf1_graph.add_global_step(meta_graph, traced.global_step)
    if traced.mode == c.TRAIN:
        train_op = meta_graph.signature_def[c.TRAIN_OP_SIGNATURE_KEY]
        train_op.CopyFrom(meta_graph.signature_def[key])
        # Fetching any output runs the whole step; a custom step may log no loss.
        anchor = c.LOSS_KEY if c.LOSS_KEY in train_op.outputs else sorted(train_op.outputs)[0]
        train_op.outputs[c.TRAIN_OP_SIGNATURE_KEY].CopyFrom(train_op.outputs[anchor])
    return meta_graph, assets
