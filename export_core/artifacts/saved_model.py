"""Describing a written SavedModel: MetaGraphs, signatures, files (like saved_model_cli)."""

from __future__ import annotations

import os
from typing import Any

from export_core.errors import ExportValidationError
from export_core.model.signature import TensorInfo
from export_core.tf_internals.tf_private import dtype_name, parse_saved_model


def describe_saved_model(path: str) -> dict[str, Any]:
    """Tags and signatures (inputs/outputs with dtype and shape) of each MetaGraph.

    Args:
        path: A local SavedModel folder.

    Returns:
        ``{"meta_graphs": [{"tags": [...], "signatures": {key: {...}}}], "files": {...}}``
    """
    saved_model = read_saved_model(path)
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


def read_saved_model(path: str) -> Any:
    """The parsed ``saved_model.pb(txt)`` of a local folder, with at least one MetaGraph.

    Raises:
        ExportValidationError: The proto does not parse (a corrupt or truncated file,
            text under the binary name) or holds no MetaGraph.
    """
    try:
        saved_model = parse_saved_model(path)
    except Exception as exc:  # noqa: BLE001 - protobuf and TensorFlow raise several types
        raise ExportValidationError(
            f"{path} is not a readable SavedModel: its saved_model.pb does not parse "
            f"({type(exc).__name__}: {_first_line(exc)}). The file is corrupt or truncated; "
            "export the model again (or restore the version from a copy)."
        ) from exc
    if not saved_model.meta_graphs:
        raise ExportValidationError(
            f"{path} is not a readable SavedModel: its saved_model.pb holds no MetaGraph "
            "(an empty or foreign file under that name). Export the model again."
        )
    return saved_model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _tensor(name: str, info: Any) -> dict[str, Any]:
    shape = tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
    return TensorInfo(name, shape, dtype_name(info.dtype)).to_dict()
