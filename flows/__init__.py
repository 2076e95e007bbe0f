"""Prefect flows of the exporter (installed as ``keras_export.flows``)."""

# First: export_core makes Keras use TensorFlow before anything below imports it.
import export_core  # noqa: F401, I001

from keras_export.flows.export import export_keras_model, export_keras_models
from keras_export.flows.scheduled import export_newest_model

__all__ = ["export_keras_model", "export_keras_models", "export_newest_model"]
