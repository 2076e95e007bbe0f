"""Errors raised by the exporter.

Few types, each also a builtin that callers would naturally catch::

    ExportError (Exception)
    ├── ExportValidationError (ValueError)      bad model, signature, path or options
    │   └── CustomObjectError                   a custom object is missing or malformed
    ├── UnsupportedModelError (NotImplementedError)
    │                                           subclassed model without get_config
    ├── VersionExistsError (FileExistsError, AssertionError)
    │                                           target folder is taken / not empty
    ├── StorageError (OSError)                  the destination cannot be reached or written
    ├── VerificationError (RuntimeError)        what was written does not reload or match
    └── EnvironmentSetupError (ImportError)     TensorFlow missing or unsupported, or Keras
                                                already running another backend

Every error is picklable (Prefect ships exceptions between processes): each keeps
only its message in ``args``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator


class ExportError(Exception):
    """Base class of every error this package raises on purpose."""


class ExportValidationError(ExportError, ValueError):
    """The export request is invalid; nothing was written."""


class CustomObjectError(ExportValidationError):
    """A custom layer, activation or loss could not be resolved."""


class EnvironmentSetupError(ExportError, ImportError):
    """This process cannot run an export: see the message for the way out."""


class UnsupportedModelError(ExportError, NotImplementedError):
    """The model cannot be exported in the requested modes."""


class VersionExistsError(ExportError, FileExistsError, AssertionError):
    """The SavedModel folder already exists and is not empty.

    It is an ``AssertionError`` too, as ``tf.keras.experimental.export_saved_model``
    raised one in this situation.
    """


class StorageError(ExportError, OSError):
    """The destination could not be reached, read or written."""


class VerificationError(ExportError, RuntimeError):
    """The written SavedModel failed to reload or did not match the model."""


@contextlib.contextmanager
def writing_into(folder: str) -> Iterator[None]:
    """A full disk (or quota) while writing ``folder`` is a ``StorageError`` saying so.

    TensorFlow reports it from its own writers (``ResourceExhaustedError``, or an
    error whose message says "No space left on device"), Python as an ``OSError``
    with ``ENOSPC``/``EDQUOT``; either way nothing is published, and the caller's
    cleanup removes what was written.
    """
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - TensorFlow and Python raise several types
        if not _out_of_space(exc):
            raise
        raise StorageError(
            f"Writing the SavedModel into '{folder}' failed: no space left on device "
            f"({type(exc).__name__}). Free space there (exports to a bucket build in the "
            "temporary folder: set TMPDIR to a larger disk); nothing was published."
        ) from exc


def _out_of_space(exc: BaseException) -> bool:
    import errno

    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return (
        type(exc).__name__ == "ResourceExhaustedError"
        or "No space left on device" in text
        or "Disk quota exceeded" in text
    )


def safe_message(exc: BaseException) -> str:
    """An error message with anything that looks like a credential masked."""
    text = str(exc)
    pattern = r"(?i)(secret|token|key|signature|credential)[^\s,;&]*[=:]\s*\S+"
    return re.sub(pattern, r"\1=***", text)


def missing_custom_object_message(subject: str, exc: BaseException) -> str:
    """Explains a Keras deserialization failure, naming the missing object if known."""
    import re

    if "safe_mode" in str(exc):
        return (
            f"{subject} contains Python code (e.g. a Lambda layer) that safe mode refuses to "
            "load. If you trust where it came from, pass safe_mode=False.\nKeras said: " + str(exc)
        )
    found = re.search(r"Could not locate (?:function|class) '([^']+)'", str(exc))
    if found:
        name = found.group(1)
        return (
            f"{subject} uses '{name}', which is neither registered with Keras nor in "
            f"custom_objects. Fix: pass custom_objects={{'{name}': {name}}} or decorate it "
            "with @keras.saving.register_keras_serializable().\nKeras said: " + str(exc)
        )
    return (
        f"{subject} could not be rebuilt from its config: {exc}\nIf it uses custom "
        "layers, activations, losses or metrics, pass them as custom_objects={'name': obj} "
        "or register them with @keras.saving.register_keras_serializable()."
    )
