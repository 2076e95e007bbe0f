"""The process an export runs in: the TensorFlow backend of Keras, a supported TensorFlow.

Imported by ``export_core/__init__.py`` before anything imports Keras. A ``.keras``
file is backend-neutral and a SavedModel is TensorFlow's, so the exporter always
runs Keras on TensorFlow, whatever ``KERAS_BACKEND`` or ``~/.keras/keras.json``
say: when Keras is not imported yet, this process's ``KERAS_BACKEND`` becomes
``tensorflow`` (the variable wins over keras.json). When Keras was already
imported with another backend it cannot switch, and the error says how to run
the export in a process of its own.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

from export_core.errors import EnvironmentSetupError

log = logging.getLogger(__name__)

BACKEND = "tensorflow"
INSTALL_HINT = (
    "pip install 'keras-savedmodel-export[tensorflow]' (any platform), or "
    "'keras-savedmodel-export[cpu]' for the CPU-only wheel (Linux x86_64, Windows); "
    "an existing tensorflow or tensorflow-cpu install is used as it is"
)


def use_tensorflow_backend() -> None:
    """Makes Keras use TensorFlow in this process, or says why it cannot.

    Raises:
        EnvironmentSetupError: TensorFlow is not installed, or Keras is already
            imported with another backend.
    """
    if importlib.util.find_spec("tensorflow") is None:
        raise EnvironmentSetupError(f"TensorFlow is not installed. Install it: {INSTALL_HINT}.")
    keras = sys.modules.get("keras")
    if keras is None:
        chosen = os.environ.get("KERAS_BACKEND")
        if chosen and chosen != BACKEND:
            log.info("KERAS_BACKEND=%s: the exporter runs Keras on TensorFlow.", chosen)
        os.environ["KERAS_BACKEND"] = BACKEND
        return
    running = keras.config.backend()
    if running != BACKEND:
        raise EnvironmentSetupError(
            f"Keras is already running with the '{running}' backend in this process, and "
            "a SavedModel export needs the TensorFlow backend (Keras cannot switch once "
            "imported). Run the export in its own process: `keras-export export "
            "MODEL.keras DEST`, a Prefect deployment of keras_export.flows, or "
            "`KERAS_BACKEND=tensorflow python your_script.py`. The .keras file itself is "
            "backend-neutral."
        )
