"""Describing a written SavedModel: MetaGraphs, signatures, files (like saved_model_cli)."""

from __future__ import annotations

import os
from typing import Any

from export_core.signature import TensorInfo
from export_core.tf_private import dtype_name, parse_saved_model


def describe_saved_model(path: str) -> dict[str, Any]:
    """Tags and signatures (inputs/outputs with dtype and shape) of each MetaGraph.

    Args:
        path: A local SavedModel folder.

    Returns:
        ``{"meta_graphs": [{"tags": [...], "signatures": {key: {...}}}], "files": {...}}``
    """
    saved_model = parse_saved_model(path)
    meta_graphs = []
    for meta_graph in saved_model.meta_graphs:
        signatures = {}
        for key, sig in sorted(meta_graph.signature_def.items()):
            if key.startswith("__"):
                continue
            signatures[key] = {
                "method_name": sig.method_name,
                "inputs": [_tensor(n, t) for n, t in sorted(sig.inputs.items())],
                "outputs": [_tensor(n, t) for n, t in sorted(sig.outputs.items())],
            }
        meta_graphs.append({"tags": list(meta_graph.meta_info_def.tags), "signatures": signatures})
    files = {}
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            files[os.path.relpath(full, path)] = os.path.getsize(full)
    return {"meta_graphs": meta_graphs, "files": dict(sorted(files.items()))}


def _tensor(name: str, info: Any) -> dict[str, Any]:
    shape = tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
    return TensorInfo(name, shape, dtype_name(info.dtype)).to_dict()
