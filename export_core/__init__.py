"""Export Keras 3 models as TensorFlow SavedModels with serve, train and eval MetaGraphs.

Plain Python: this package never imports Prefect (the pipeline lives in ``tasks``
and ``flows``).
"""

from __future__ import annotations

import os

# gcsfs asks a gRPC storage-layout API first, which emulators and many proxies cannot
# answer (every call then stalls for a minute); plain JSON API calls work everywhere.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from export_core.environment import use_tensorflow_backend  # noqa: E402

use_tensorflow_backend()  # before anything below imports Keras

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
from export_core.export import ExportResult, export_saved_model, run_export  # noqa: E402
from export_core.load import load_from_saved_model  # noqa: E402

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
