"""Prefect flows of the exporter."""

from flows.export import export_keras_model, export_keras_models
from flows.scheduled import export_newest_model

__all__ = ["export_keras_model", "export_keras_models", "export_newest_model"]
