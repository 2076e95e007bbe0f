"""The Prefect flow runs every step as a task on a real Prefect API and publishes."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests import models

STEP_TASKS = {
    "validate",
    "clone-per-mode",
    "trace",
    "write-checkpoint",
    "write-proto",
    "verify-reload",
    "publish",
}


def task_names(flow_run_id) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name.rsplit("-", 1)[0] for r in runs if r.state and r.state.is_completed()}


def run_logs(flow_run_id, wait_for: str) -> str:
    """The flow run's logs as stored by the API (shipped in the background: poll)."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    text = ""
    with get_client(sync_client=True) as client:
        for _ in range(100):
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            text = "\n".join(log.message for log in logs)
            if wait_for in text:
                break
            time.sleep(0.2)
    return text


def test_flow_exports_a_keras_file_through_every_step(prefect_api, tmp_path):
    from keras_export.flows import export_keras_model

    model = models.functional_regressor()
    source = tmp_path / "model.keras"
    model.save(source)
    x, _ = models.regression_batch()
    np.savez(tmp_path / "golden.npz", features=x)
    state = export_keras_model(
        model=str(source),
        destination=str(tmp_path / "registry"),
        sample_inputs=str(tmp_path / "golden.npz"),
        full_verify=True,
        return_state=True,
    )
    result = state.result()
    assert result["modes"] == ["serve", "train", "eval"]
    assert set(result["parity"]["loaders"]) == {
        f"{kind}:{tag}" for kind in ("tf1", "tf2") for tag in ("serve", "train", "eval")
    }
    assert result["parity"]["samples"] == len(x) and not result["parity"]["synthesized"]
    assert str(result["version"]) == os.path.basename(result["path"])
    assert {"validate", "clone-per-mode", "trace", "verify-reload", "publish"} <= set(
        result["seconds"]
    )
    assert STEP_TASKS <= task_names(state.state_details.flow_run_id)
    served = models.tf1_predict(result["path"], {"features": x})["prediction"]
    assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)


def test_flow_rejects_bad_json_parameters_and_publishes_nothing(prefect_api, tmp_path):
    from export_core import CustomObjectError, ExportValidationError
    from keras_export.flows import export_keras_model

    source = tmp_path / "model.keras"
    models.functional_regressor().save(source)
    registry = tmp_path / "registry"
    with pytest.raises(ExportValidationError, match="input_signature\\[0\\]"):
        export_keras_model(
            model=str(source), destination=str(registry), input_signature=[{"dtype": "float32"}]
        )
    with pytest.raises(CustomObjectError, match="cannot be imported"):
        export_keras_model(
            model=str(source), destination=str(registry), custom_objects=["no_such_module:thing"]
        )
    with pytest.raises(ExportValidationError, match="does not exist"):
        export_keras_model(model=str(tmp_path / "missing.keras"), destination=str(registry))
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    with pytest.raises(ExportValidationError, match="not a complete .keras archive"):
        export_keras_model(model=str(tmp_path / "corrupt.keras"), destination=str(registry))
    assert not registry.exists()


def test_flow_writes_manifest_artifact_and_prunes_old_versions(prefect_api, tmp_path):
    import json

    from prefect.client.orchestration import get_client

    from export_core.artifacts.manifest import Manifest, check_files
    from keras_export.flows import export_keras_model

    model = models.functional_regressor()
    source = tmp_path / "model.keras"
    model.save(source)
    registry = tmp_path / "registry"
    (registry / "1000").mkdir(parents=True)
    (registry / "1000" / "saved_model.pb").write_bytes(b"old complete version")
    (registry / "1001").mkdir()  # incomplete: never pruned
    (registry / "notes").mkdir()  # not a version: never pruned
    result = export_keras_model(model=str(source), destination=str(registry), keep_versions=1)
    assert result["pruned"] == [1000]
    assert sorted(os.listdir(registry)) == sorted(["1001", "notes", str(result["version"])])

    with open(os.path.join(result["path"], "export_manifest.json")) as f:
        manifest = Manifest.from_dict(json.load(f))
    check_files(result["path"], manifest)
    assert manifest.source["uri"] == str(source) and len(manifest.source["sha256"]) == 64
    assert manifest.parity["max_abs_diff"] <= 1e-5
    assert [m["tags"] for m in manifest.meta_graphs] == [["serve"], ["train"], ["eval"]]
    assert {"tensorflow", "keras", "python"} <= set(manifest.versions)
    assert result["signatures"]["serving_default"]["inputs"][0]["name"] == "features"

    # A second publish to the same base: one artifact key per base keeps both versions
    # in its history, and each publish is a materialization of the base's asset
    # downstream of its source file.
    second = export_keras_model(model=str(source), destination=str(registry))
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.events.worker import EventsWorker

    from keras_export.tasks.announce import artifact_key

    key = artifact_key(str(registry))
    assert key.startswith("keras-export-") and key == key.lower()
    assert artifact_key(str(tmp_path / "other")) != key
    EventsWorker.drain_all()
    with get_client(sync_client=True) as client:
        history = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=[key])))  # fmt: skip
        for _ in range(120):  # the server stores events a moment after receiving them
            events = [e for e in all_events(client) if e.event.startswith("prefect.asset.")]
            materialized = [
                e for e in events if e.event == "prefect.asset.materialization.succeeded"
                and e.resource.id == f"file://{registry}"
            ]  # fmt: skip
            if len(materialized) >= 2:
                break
            time.sleep(0.5)
    published = [r["path"] for r in (result, second)]
    assert sorted(p for a in history for p in published if p in a.data) == sorted(published)
    assert all("serving_default" in a.data for a in history)
    assert sorted(e.payload["version"] for e in materialized) == sorted(
        r["version"] for r in (result, second)
    )
    for event in materialized:
        related = {(r.id, r.role) for r in event.related}
        assert (f"file://{source}", "asset") in related
        assert event.payload["source_sha256"] == manifest.source["sha256"]
    referenced = [e for e in events if e.event == "prefect.asset.referenced"]
    assert f"file://{source}" in {e.resource.id for e in referenced}


def all_events(client) -> list:
    page, events = client.read_events(limit=50), []
    while True:
        events += list(page.events)
        if not page.next_page:
            return events
        page = client.read_events_page(str(page.next_page))


def test_batch_flow_exports_in_parallel_and_survives_one_failure(prefect_api, tmp_path):
    from keras_export.flows import export_keras_models

    sources_ = []
    for i in range(3):
        path = tmp_path / f"m{i}.keras"
        models.functional_regressor().save(path)
        sources_.append(str(path))
    specs = [
        {"model": s, "destination": str(tmp_path / "registry" / f"m{i}")}
        for i, s in enumerate(sources_)
    ]
    specs.insert(
        1,
        {
            "model": str(tmp_path / "missing.keras"),
            "destination": str(tmp_path / "registry" / "missing"),
        },
    )
    summary = export_keras_models(specs)
    assert summary["succeeded"] == 3 and summary["failed"] == 1
    assert not summary["results"][1]["ok"] and "does not exist" in summary["results"][1]["error"]
    for entry in summary["results"][::2] + summary["results"][3:]:
        assert entry["ok"] and os.path.exists(os.path.join(entry["path"], "saved_model.pb"))
    assert not (tmp_path / "registry" / "missing").exists()


@pytest.mark.parametrize("backend_name", ["s3", "gcs"])
def test_flow_publishes_to_object_store_servers(prefect_api, request, tmp_path, backend_name):
    import uuid

    import fsspec

    from keras_export.flows import export_keras_model

    server = request.getfixturevalue(f"{backend_name}_server")
    fsspec.AbstractFileSystem.clear_instance_cache()
    scheme = "s3" if backend_name == "s3" else "gs"
    bucket = f"b{uuid.uuid4().hex[:12]}"
    options = server.storage_options()
    fs, _ = fsspec.core.url_to_fs(f"{scheme}://{bucket}", **options)
    fs.mkdir(bucket)
    model = models.functional_regressor()
    local_source = tmp_path / "model.keras"
    model.save(local_source)
    fs.put_file(str(local_source), f"{bucket}/src/model.keras")
    state = export_keras_model(
        model=f"{scheme}://{bucket}/src/model.keras",
        destination=f"{scheme}://{bucket}/registry",
        storage_options=options,
        return_state=True,
    )
    result = state.result()
    assert result["path"] == f"{scheme}://{bucket}/registry/{result['version']}"
    total = sum(f["size"] for f in result["files"].values())
    expected = f"Uploaded {total} / {total} bytes (100%)"
    logs = run_logs(state.state_details.flow_run_id, wait_for=expected)
    assert expected in logs, "upload progress is reported through the run logger"
    secret = options.get("secret") or options.get("token")
    assert secret not in logs
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = [a for a in client.read_latest_artifacts() if a.key.startswith("keras-ex")]
    assert artifacts and all(secret not in str(a.data) for a in artifacts)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/registry", detail=False))
    assert names == [str(result["version"])]
    local = tmp_path / "download"
    remote = fs.find(f"{bucket}/registry/{result['version']}")
    prefix = f"{bucket}/registry/{result['version']}/"
    fs.get(remote, [str(local / r[len(prefix) :]) for r in remote])
    assert (local / "export_manifest.json").exists()
    x, _ = models.regression_batch()
    served = models.tf1_predict(str(local), {"features": x})["prediction"]
    assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)


def test_batch_flow_runs_on_a_dask_cluster_when_given_one(prefect_api, tmp_path):
    from prefect_dask import DaskTaskRunner

    from keras_export.flows import export_keras_models

    specs = []
    for i in range(2):
        path = tmp_path / f"m{i}.keras"
        models.functional_regressor().save(path)
        specs.append({"model": str(path), "destination": str(tmp_path / "registry" / f"m{i}")})
    # An in-process Dask cluster (threads): the same flow, a different runner.
    runner = DaskTaskRunner(
        cluster_kwargs={"n_workers": 1, "processes": False, "threads_per_worker": 2}
    )
    summary = export_keras_models.with_options(task_runner=runner)(specs)
    assert summary == {**summary, "succeeded": 2, "failed": 0}
    for entry in summary["results"]:
        assert os.path.exists(os.path.join(entry["path"], "export_manifest.json"))


def test_flow_publishes_a_text_classifier_to_s3_with_string_golden_data(
    prefect_api, s3_server, tmp_path
):
    import uuid

    import fsspec
    import tensorflow as tf

    from export_core.artifacts.golden import read_golden
    from export_core.reverify import verify_saved_model
    from keras_export.flows import export_keras_model
    from tests import text_models

    fsspec.AbstractFileSystem.clear_instance_cache()
    options = s3_server.storage_options()
    bucket = f"b{uuid.uuid4().hex[:12]}"
    fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", **options)
    fs.mkdir(bucket)
    model = text_models.text_classifier()
    model.fit(tf.constant(text_models.SENTENCES), text_models.LABELS, epochs=1, verbose=0)
    model.save(tmp_path / "text.keras")
    fs.put_file(str(tmp_path / "text.keras"), f"{bucket}/src/text.keras")
    np.savez(tmp_path / "golden.npz", text=np.array(["the cat", "", "dog ran far"]))
    fs.put_file(str(tmp_path / "golden.npz"), f"{bucket}/src/golden.npz")

    result = export_keras_model(
        model=f"s3://{bucket}/src/text.keras",
        destination=f"s3://{bucket}/registry",
        storage_options=options,
        sample_inputs=f"s3://{bucket}/src/golden.npz",
    )
    assert result["modes"] == ["serve", "train", "eval"]
    assert "golden.npz" in result["files"]
    checked = verify_saved_model(result["path"], storage_options=options)
    assert checked["manifest_checked"] and checked["compared_with"] == "golden.npz"
    local = tmp_path / "landed"
    prefix = f"{bucket}/registry/{result['version']}/"
    remote = fs.find(prefix)
    fs.get(remote, [str(local / r[len(prefix) :]) for r in remote])
    golden = read_golden(str(local))
    assert list(golden.inputs["text"]) == [b"the cat", b"", b"dog ran far"]
    assert not golden.synthesized
    served = models.tf1_predict(str(local), {"text": golden.inputs["text"]})["score"]
    expected = model.predict(tf.constant(golden.inputs["text"]), verbose=0)
    assert_allclose(served, expected, atol=1e-5)
    assert_allclose(golden.outputs["score"], expected, atol=1e-5)


def test_flow_retry_after_publish_reuses_the_version_instead_of_a_second_copy(
    prefect_api, tmp_path, monkeypatch
):
    """The run fails once after publishing; Prefect retries it; one version exists."""
    from keras_export.flows import export as flow_module

    real_announce, calls = flow_module.announce, []

    def announce_failing_once(result, source, base):
        calls.append(result["version"])
        if len(calls) == 1:
            raise ConnectionError("lost the API after publishing (injected)")
        return real_announce(result, source, base)

    monkeypatch.setattr(flow_module, "announce", announce_failing_once)
    registry = tmp_path / "registry"
    state = flow_module.export_keras_model.with_options(retries=1, retry_delay_seconds=0)(
        model=models.functional_regressor(), destination=str(registry), return_state=True
    )
    result = state.result()
    assert len(calls) == 2 and calls[0] == calls[1] == result["version"]
    assert sorted(os.listdir(registry)) == [str(result["version"])]
    logs = run_logs(state.state_details.flow_run_id, wait_for="was already published")
    assert "was already published" in logs
