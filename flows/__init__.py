"""Prefect flows of the exporter."""

from flows.export import export_keras_model

__all__ = ["export_keras_model"]
