"""Prefect tasks, one per export step."""
