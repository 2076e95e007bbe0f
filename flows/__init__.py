"""Prefect flows of the exporter."""

from flows.export import export_keras_model, export_keras_models

__all__ = ["export_keras_model", "export_keras_models"]
