"""Prefect tasks, one per export step (installed as ``keras_export.tasks``)."""

# First: export_core makes Keras use TensorFlow before anything below imports it.
import export_core  # noqa: F401
