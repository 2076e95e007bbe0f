"""Checks that need neither TensorFlow nor Prefect: run first, fail in well under a second.

The CLI runs them before it starts Prefect's API or imports TensorFlow; the API
and the flows run the same checks (``keep_versions``, the model file, the
destination, the modes...), so a notebook, a deployment and the command line refuse
a bad input with the same exception and the same words. Nothing here touches the
network: a remote URI is checked for a known scheme and an installed backend.

``files``: the model file, the destination, sample inputs; ``options``: modes,
custom objects, storage options, input signatures, retention counts.
"""

from __future__ import annotations

from export_core.preflight.files import (
    check_archive,
    check_destination,
    check_model_file,
    check_sample_inputs_file,
    check_scheme,
    local_path,
    scheme_of,
)
from export_core.preflight.options import (
    DTYPES,
    MODE_ALIASES,
    check_custom_object_paths,
    check_keep,
    check_modes,
    check_signature_json,
    check_storage_options,
    parse_json,
)

__all__ = [
    "DTYPES",
    "MODE_ALIASES",
    "check_archive",
    "check_custom_object_paths",
    "check_destination",
    "check_keep",
    "check_model_file",
    "check_modes",
    "check_sample_inputs_file",
    "check_scheme",
    "check_signature_json",
    "check_storage_options",
    "local_path",
    "parse_json",
    "scheme_of",
]
