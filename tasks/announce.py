"""What a published export announces in Prefect's own terms.

* An artifact keyed by the base (``artifact_key``), so the Artifacts page keeps one
  entry per model registry with every published version in its history.
* An asset materialization: the base (``asset_key``, e.g. ``s3://registry/churn``) is
  the asset, each publish a materialization downstream of the source ``.keras`` (its
  upstream asset), with the version, its path and the lineage metadata. Prefect's
  server records these as ``prefect.asset.materialization.succeeded`` events (with
  the source as a related ``asset``); the Assets page and lineage graph are drawn from
  them where the Prefect UI offers them.
* The events ``model.version.published`` and ``keras.model.exported``.
"""

from __future__ import annotations

import hashlib
import os
import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

ASSET_KEY_LIMIT = 512  # Prefect's own limit on an asset key


@task(name="announce", cache_policy=NO_CACHE)
def announce(result: dict, source: dict, base: str) -> list[str]:
    """The artifact, the asset and the events; returns what failed, as warnings. The
    version is already visible: a failure here is a warning in the result and the
    logs, not a failed (and retried) export."""
    logger = get_run_logger()
    warnings = []
    steps_after = (
        ("artifact", lambda: create_markdown_artifact(
            key=artifact_key(base), markdown=summary_markdown(result),
            description=f"SavedModel versions of {base}",
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


def record_asset(result: dict, source: dict, base: str) -> list[str]:
    """Records the publish as a materialization of the base's asset, downstream of the
    source file's; returns a warning instead when either cannot be an asset key."""
    key, upstream = asset_key(base), asset_key(source.get("uri")) if source.get("uri") else None
    if key is None:
        return [f"Version {result['version']} is published; {base} cannot be a Prefect asset key."]
    asset = Asset(key=key, properties=AssetProperties(
        name=model_name(source), description=f"SavedModel versions under {base}"
    ))  # fmt: skip
    lineage = result.get("lineage") or {}
    details = {
        "version": result["version"],
        "path": result["path"],
        "modes": result["modes"],
        "source_sha256": source.get("sha256"),
        "metadata": lineage.get("metadata") or {},
    }

    def published() -> int:
        add_asset_metadata(asset, details)
        return result["version"]

    recorder = materialize(
        asset, by="keras-export", name="record-asset", cache_policy=NO_CACHE,
        asset_deps=[upstream] if upstream else None,
    )(published)  # fmt: skip
    recorder()
    return []


def asset_key(uri: str | None) -> str | None:
    """``uri`` as a Prefect asset key: a URI with a lowercase scheme (local paths become
    ``file://`` URIs); None when Prefect would refuse it (too long, control characters)."""
    if not uri:
        return None
    key = str(uri) if "://" in str(uri) else "file://" + os.path.abspath(str(uri))
    scheme, _, rest = key.partition("://")
    key = f"{scheme.lower()}://{rest}".rstrip("/")
    if len(key) > ASSET_KEY_LIMIT or any(c in key for c in "\n\r\t") or not rest:
        return None
    return key


def artifact_key(base: str) -> str:
    """A Prefect artifact key for one base: lowercase letters, digits and dashes, readable
    (the base's last parts) and unique (a hash of the whole URI)."""
    readable = re.sub(r"[^a-z0-9]+", "-", str(base).lower()).strip("-")[-40:].strip("-")
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:10]
    return f"keras-export-{readable}-{digest}" if readable else f"keras-export-{digest}"


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
