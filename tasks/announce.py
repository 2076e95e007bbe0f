"""What a published export announces: the artifact in the Prefect UI and the events."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event


@task(name="announce", cache_policy=NO_CACHE)
def announce(result: dict, source: dict) -> list[str]:
    """The artifact and the event; returns what failed, as warnings. The version is
    already visible: a failure here is a warning in the result and the logs, not a
    failed (and retried) export."""
    logger = get_run_logger()
    warnings = []
    steps_after = (
        ("artifact", lambda: create_markdown_artifact(
            key="keras-export", markdown=summary_markdown(result), description="SavedModel export"
        )),
        ("event", lambda: emit_published_event(result, source)),
    )  # fmt: skip
    for what, step in steps_after:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - any failure here must not fail the export
            warning = f"Version {result['version']} is published, but its {what} failed: {exc}"
            warnings.append(warning)
            logger.warning("%s", warning)
    return warnings


PUBLISHED_EVENT = "model.version.published"
EXPORTED_EVENT = "keras.model.exported"


def emit_published_event(result: dict, source: dict) -> None:
    """Announces the new version so other deployments (roll-outs, alerts) can react.

    Two names for one payload: ``model.version.published`` (what earlier releases
    emitted, kept for existing triggers) and ``keras.model.exported`` (with lineage).
    """
    name = model_name(source)
    payload = {
        "uri": result["path"],
        "version": result["version"],
        "model": name,
        "source_uri": source.get("uri"),
        "source_sha256": source.get("sha256"),
        "modes": result["modes"],
        "lineage": result.get("lineage"),
    }
    resource = {"prefect.resource.id": f"keras-export.model.{name}", "prefect.resource.name": name}
    for event in (PUBLISHED_EVENT, EXPORTED_EVENT):
        emit_event(event=event, resource=resource, payload=payload)


def model_name(source: dict) -> str:
    """The model's name: the source file's stem, else the Keras model's name."""
    uri = source.get("uri")
    if uri:
        return uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".keras")
    return source.get("name") or "model"


def summary_markdown(result: dict) -> str:
    """The artifact shown in the Prefect UI: version link, signatures, files, parity."""
    lines = [
        f"# Published [{result['path']}]({result['path']})",
        f"version `{result['version']}`, modes {', '.join(result['modes'])}",
        "",
        "| signature | inputs | outputs |",
        "|---|---|---|",
    ]
    for key, sig in result["signatures"].items():
        ins = ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in sig["inputs"])
        outs = ", ".join(t["name"] for t in sig["outputs"])
        lines.append(f"| `{key}` | {ins} | {outs} |")
    lines += ["", "| file | bytes |", "|---|---|"]
    lines += [f"| {name} | {info['size']} |" for name, info in result["files"].items()]
    parity = result["parity"]
    lines += [
        "",
        f"Parity: max |diff| {parity['max_abs_diff']:.3g} over {parity['samples']} samples, "
        f"loaders {', '.join(parity['loaders'])}.",
    ]
    return "\n".join(lines)
