"""Export Keras 3 models as TensorFlow SavedModels with serve, train and eval MetaGraphs.

Plain Python: this package never imports Prefect (the pipeline lives in
``keras_export.tasks`` and ``keras_export.flows``).

Importing the package is cheap: it only chooses Keras's TensorFlow backend (see
``environment``); TensorFlow and Keras are imported when a name that needs them
is first used (``export_core.export_saved_model``, a submodule...), so the CLI can
check its arguments and answer ``--help`` without them.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# gcsfs asks a gRPC storage-layout API first, which emulators and many proxies cannot
# answer (every call then stalls for a minute); plain JSON API calls work everywhere.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from export_core.environment import use_tensorflow_backend  # noqa: E402
from export_core.errors import (  # noqa: E402
    CustomObjectError,
    EnvironmentSetupError,
    ExportError,
    ExportValidationError,
    StorageError,
    UnsupportedModelError,
    VerificationError,
    VersionExistsError,
)

use_tensorflow_backend()  # before anything imports Keras

_LAZY = {
    "ExportResult": "export_core.request",
    "export_saved_model": "export_core.api",
    "run_export": "export_core.api",
    "load_from_saved_model": "export_core.reload",
}

__all__ = [
    "CustomObjectError",
    "EnvironmentSetupError",
    "ExportError",
    "ExportResult",
    "ExportValidationError",
    "StorageError",
    "UnsupportedModelError",
    "VerificationError",
    "VersionExistsError",
    "export_saved_model",
    "load_from_saved_model",
    "run_export",
]


def __getattr__(name: str) -> Any:
    """Imports the API (and TensorFlow) on first use; submodules load on access too."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"export_core.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"export_core.{name}":
            raise
        raise AttributeError(f"module 'export_core' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
