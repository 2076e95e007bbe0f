"""Serve the exporter's deployments with ``prefect.serve`` (no work pool needed).

    KERAS_EXPORT_SOURCE_PREFIX=s3://ml/runs KERAS_EXPORT_DESTINATION=s3://registry/churn \\
    KERAS_EXPORT_CREDENTIALS=aws-credentials/registry-writer python deployments/serve.py

Two deployments, the same as ``deployments/prefect.yaml`` declares for work pools:

* ``export-newest-model/scheduled-export`` — on a cron schedule (``KERAS_EXPORT_CRON``,
  hourly by default), export the newest ``.keras`` under the source prefix unless it
  is already the newest published version;
* ``export-keras-model/on-training-completed`` — when a ``training.run.completed``
  event arrives, export ``event.payload.model_uri`` to ``event.payload.destination``,
  recording ``event.payload.metadata`` (the training metrics
  ``keras_export.callbacks.ExportCallback`` sends) in the version's lineage.

Every publish emits ``model.version.published`` for other deployments to react to.
"""

from __future__ import annotations

import os
import sys

from prefect import serve
from prefect.events import DeploymentEventTrigger

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_export.flows import (  # noqa: E402
    export_keras_model,
    export_newest_model,
    promote_version,
)

TRAINING_COMPLETED = "training.run.completed"
EVALUATION_PASSED = "model.evaluation.passed"


def build_deployments(
    source_prefix: str,
    destination: str,
    cron: str = "0 * * * *",
    credentials: str | None = None,
):
    """The three deployments, configured with plain values.

    ``credentials`` is a saved block's name (``"aws-credentials/registry-writer"``):
    the deployments store that name, never a secret, and every run loads the block.
    """
    block = {"credentials": credentials} if credentials else {}
    scheduled = export_newest_model.to_deployment(
        name="scheduled-export",
        cron=cron,
        parameters={"source_prefix": source_prefix, "destination": destination, **block},
        description="Export the newest trained model under the source prefix.",
        tags=["keras-export"],
    )
    triggered = _on_event(
        export_keras_model,
        "on-training-completed",
        TRAINING_COMPLETED,
        {
            "model": "event.payload.model_uri",
            "destination": "event.payload.destination",
            # What ExportCallback sends (metrics, epoch, metadata): the version's lineage.
            # Events from other senders may carry none.
            "metadata": "event.payload.metadata | default({})",
        },
        block,
        "Export the model a finished training run announces.",
    )
    promoter = _on_event(
        promote_version,
        "on-evaluation-passed",
        EVALUATION_PASSED,
        {
            "base": "event.payload.base",
            "version": "event.payload.version",
            "label": "event.payload.label",
        },
        block,
        "Move a label to a version that passed its evaluation.",
    )
    return [scheduled, triggered, promoter]


def _on_event(flow, name: str, event: str, payload: dict, block: dict, description: str):
    """A deployment run by ``event``; each parameter is a Jinja expression over the event
    (one expression keeps its JSON type: a number stays a number, a dict a dict)."""
    parameters = {k: f"{{{{ {expression} }}}}" for k, expression in payload.items()}
    return flow.to_deployment(
        name=name,
        triggers=[DeploymentEventTrigger(expect={event}, parameters={**parameters, **block})],
        description=description,
        tags=["keras-export"],
    )


def main() -> None:
    source = os.environ.get("KERAS_EXPORT_SOURCE_PREFIX", os.path.abspath("exports"))
    destination = os.environ.get("KERAS_EXPORT_DESTINATION", os.path.abspath("exports/registry"))
    cron = os.environ.get("KERAS_EXPORT_CRON", "0 * * * *")
    credentials = os.environ.get("KERAS_EXPORT_CREDENTIALS")  # e.g. aws-credentials/registry-writer
    serve(*build_deployments(source, destination, cron, credentials))


if __name__ == "__main__":
    main()
