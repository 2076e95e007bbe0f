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
    └── VerificationError (RuntimeError)        what was written does not reload or match

Every error is picklable (Prefect ships exceptions between processes): each keeps
only its message in ``args``.
"""

from __future__ import annotations


class ExportError(Exception):
    """Base class of every error this package raises on purpose."""


class ExportValidationError(ExportError, ValueError):
    """The export request is invalid; nothing was written."""


class CustomObjectError(ExportValidationError):
    """A custom layer, activation or loss could not be resolved."""


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
