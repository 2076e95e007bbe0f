"""Prefect flows of the exporter (installed as ``keras_export.flows``).

The flows import Prefect, Keras and TensorFlow; they are loaded on first use, so
that ``keras_export.cli.main`` starts (``--help``, argument checks) without them.
"""

from __future__ import annotations

import importlib
from typing import Any

# First: export_core makes Keras use TensorFlow before anything imports it.
import export_core  # noqa: F401

_FLOWS = {
    "export_keras_model": "keras_export.flows.export",
    "export_keras_models": "keras_export.flows.batch",
    "export_newest_model": "keras_export.flows.scheduled",
    "promote_version": "keras_export.flows.promote",
}

__all__ = ["export_keras_model", "export_keras_models", "export_newest_model", "promote_version"]


def __getattr__(name: str) -> Any:
    module = _FLOWS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_export.flows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
