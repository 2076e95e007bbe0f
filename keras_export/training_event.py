"""Announcing a trained model to Prefect: one event, sent and confirmed, or a reason why not.

What ``keras_export.callbacks.ExportCallback`` sends when training ends. Unlike
``prefect.events.emit_event`` (fire and forget, through a background worker), the
sender learns whether the event reached the API, so a training script can warn that
its model was not announced rather than let it pass silently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

TRAINING_COMPLETED = "training.run.completed"


def emit_and_confirm(event: str, resource: dict, payload: dict, timeout: float) -> str | None:
    """Sends one event to the configured Prefect API and waits until it was sent.

    Returns None when sent, else what went wrong. No API configured is a problem, not
    an ephemeral server: an event to a server that dies with this process reaches no
    deployment.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return "no Prefect API is configured: set PREFECT_API_URL"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # works inside a running loop too
        future = pool.submit(asyncio.run, _send(url, event, resource, payload, timeout))
        try:
            future.result(timeout=timeout + 5)
        except Exception as exc:  # noqa: BLE001 - any failure is reported, fit goes on
            return f"the Prefect API at {url} did not take the event: {exc or type(exc).__name__}"
    return None


async def _send(url: str, event: str, resource: dict, payload: dict, timeout: float) -> None:
    from prefect.events import Event
    from prefect.events.clients import PrefectCloudEventsClient, PrefectEventsClient
    from prefect.settings import PREFECT_CLOUD_API_URL

    if url.startswith(PREFECT_CLOUD_API_URL.value()):  # Cloud: the API key from the settings
        client = PrefectCloudEventsClient(api_url=url, reconnection_attempts=0)
    else:
        client = PrefectEventsClient(api_url=url, reconnection_attempts=0)
    sent = Event(event=event, resource=resource, payload=payload)

    async def deliver() -> None:
        async with client:
            await client.emit(sent)

    await asyncio.wait_for(deliver(), timeout)
