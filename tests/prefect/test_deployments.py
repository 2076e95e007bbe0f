"""Deployments and events on a real local Prefect server (SQLite, 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import keras
import pytest
from numpy.testing import assert_allclose

from tests import models
from tests.helpers import ROOT
from tests.servers import free_port

PREFECT = os.path.join(os.path.dirname(sys.executable), "prefect")


def wait_for(predicate, what: str, attempts: int = 600, delay: float = 0.5):
    """Polls ``predicate`` (bounded); returns its first truthy value."""
    for _ in range(attempts):
        value = predicate()
        if value:
            return value
        time.sleep(delay)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    env.pop("PREFECT_API_KEY", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = httpx.Client(base_url=env["PREFECT_API_URL"], timeout=30)

    def healthy():
        try:
            return api.get("/health").status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None and pytest.fail((home / "server.log").read_text())

    wait_for(healthy, "the Prefect server to start", attempts=480)
    yield env, api, home
    process.terminate()
    process.wait(timeout=30)
    log.close()


def deployment(api, flow: str, name: str) -> dict | None:
    response = api.get(f"/deployments/name/{flow}/{name}")
    return response.json() if response.status_code == 200 else None


def flow_runs(api, deployment_id: str) -> list[dict]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}}
    return api.post("/flow_runs/filter", json=body).json()


def events_named(api, name: str) -> list[dict]:
    body = {
        "filter": {"event": {"name": [name]}, "occurred": {"since": "2000-01-01T00:00:00Z"}},
        "limit": 50,
    }
    response = api.post("/events/filter", json=body)
    response.raise_for_status()
    return response.json()["events"]


def deploy_all(env: dict, pool: str, pool_type: str, prefect_file: str) -> None:
    """Creates a work pool and runs ``prefect deploy --all`` on a prefect.yaml."""

    def prefect(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
        )

    for done in (
        prefect("work-pool", "create", pool, "--type", pool_type),
        prefect("--no-prompt", "deploy", "--all", "--prefect-file", prefect_file),
    ):
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def finished_run(api, deployment_id: str) -> dict | None:
    """The deployment's first flow run once it has finished (None until then)."""
    runs = flow_runs(api, deployment_id)
    done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
    return done[0] if done else None


def finished_runs(api, deployment_id: str, count: int) -> list[dict] | None:
    """The deployment's flow runs once ``count`` of them have finished."""
    runs = flow_runs(api, deployment_id)
    done = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
    return done if len(done) >= count else None


TRAIN_WITH_CALLBACK = """
import json, pathlib, sys
import numpy as np
from keras_export.callbacks import ExportCallback
from tests import models

model = models.functional_regressor()
x, y = models.regression_batch(32)
callback = ExportCallback(sys.argv[1], sys.argv[2], monitor="val_loss", save_best_only=True,
                          metadata={"dataset": "synthetic-v1"})
model.fit(x, y, validation_split=0.25, epochs=4, batch_size=8, verbose=0, callbacks=[callback])
pathlib.Path(sys.argv[1]).with_name("announced.json").write_text(
    json.dumps({**callback.announced, "best": callback.best}))
"""


def test_served_deployments_schedule_trigger_and_announce(server, tmp_path):
    env, api, home = server
    source, registry = tmp_path / "runs", tmp_path / "registry"
    source.mkdir()
    serve_env = {
        **env,
        "KERAS_EXPORT_SOURCE_PREFIX": str(source),
        "KERAS_EXPORT_DESTINATION": str(registry),
        "KERAS_EXPORT_CRON": "17 3 * * *",
    }
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    serving = subprocess.Popen(
        [sys.executable, "deployments/serve.py"],
        cwd=ROOT,
        env=serve_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        scheduled = wait_for(
            lambda: deployment(api, "export-newest-model", "scheduled-export"),
            "the scheduled deployment",
        )
        crons = [s["schedule"].get("cron") for s in scheduled["schedules"]]
        assert crons == ["17 3 * * *"], "the schedule is registered with the server"
        triggered = wait_for(
            lambda: deployment(api, "export-keras-model", "on-training-completed"),
            "the triggered deployment",
        )

        # A training script with the callback: a real fit, the best epoch saved and
        # announced with its metrics. Then an event from a sender with no metrics.
        subprocess.run(
            [sys.executable, "-c", TRAIN_WITH_CALLBACK, str(source / "churn.keras"), str(registry)],
            env=env, cwd=ROOT, check=True, timeout=300,
        )  # fmt: skip
        plain = tmp_path / "plain"
        emit = (
            "from prefect.events import emit_event\n"
            "from prefect.events.worker import EventsWorker\n"
            "import sys\n"
            "emit_event(event='training.run.completed',\n"
            "           resource={'prefect.resource.id': 'training.run.42'},\n"
            "           payload={'model_uri': sys.argv[1], 'destination': sys.argv[2]})\n"
            "EventsWorker.drain_all()\n"
        )
        subprocess.run(
            [sys.executable, "-c", emit, str(source / "churn.keras"), str(plain)],
            env=env,
            check=True,
            timeout=120,
        )

        runs = wait_for(lambda: finished_runs(api, triggered["id"], 2), "the triggered runs")
        assert all(r["state_type"] == "COMPLETED" for r in runs), (
            tmp_path / "serve.log"
        ).read_text()[-3000:]
        run = next(r for r in runs if r["parameters"]["destination"] == str(registry))
        assert run["parameters"]["model"] == str(source / "churn.keras")
        (version,) = os.listdir(registry)
        x, _ = models.regression_batch()
        best = keras.saving.load_model(source / "churn.keras")
        served = models.tf1_predict(str(registry / version), {"features": x})["prediction"]
        assert_allclose(served, best.predict(x, verbose=0), atol=1e-5)
        announced = json.loads((source / "announced.json").read_text())
        manifest = json.loads((registry / version / "export_manifest.json").read_text())
        recorded = manifest["lineage"]["metadata"]
        assert recorded == announced["metadata"] and recorded["monitor"] == "val_loss"
        assert recorded["val_loss"] == announced["metrics"]["val_loss"] == announced["best"]
        assert recorded["dataset"] == "synthetic-v1" and recorded["epoch"] >= 1
        (plain_version,) = os.listdir(plain)  # no metadata in the event: none recorded
        plain_manifest = json.loads((plain / plain_version / "export_manifest.json").read_text())
        assert plain_manifest["lineage"]["metadata"] == {}

        def event_of(name: str, uri: str):
            found = [e for e in events_named(api, name) if e["payload"]["uri"] == uri]
            return found[0] if len(found) == 1 else None

        mine = wait_for(lambda: event_of("model.version.published", str(registry / version)),
                        "the model.version.published event")  # fmt: skip
        assert str(mine["payload"]["version"]) == version and mine["payload"]["model"] == "churn"
        assert mine["resource"]["prefect.resource.name"] == "churn"
        mine = wait_for(lambda: event_of("keras.model.exported", str(registry / version)),
                        "keras.model.exported")  # fmt: skip
        lineage = mine["payload"]["lineage"]
        assert lineage["prefect"]["flow_run_id"] == run["id"]
        assert lineage["prefect"]["deployment_name"] == "on-training-completed"
        assert lineage["source"]["uri"] == str(source / "churn.keras")

        # An evaluation job announces the version passed: the promote deployment labels it.
        promoter = wait_for(
            lambda: deployment(api, "promote-version", "on-evaluation-passed"), "the promoter"
        )
        passed = (
            "from prefect.events import emit_event\n"
            "from prefect.events.worker import EventsWorker\n"
            "import sys\n"
            "emit_event(event='model.evaluation.passed',\n"
            "           resource={'prefect.resource.id': 'evaluation.7'},\n"
            "           payload={'base': sys.argv[1], 'version': int(sys.argv[2]),\n"
            "                    'label': 'stable'})\n"
            "EventsWorker.drain_all()\n"
        )
        subprocess.run(
            [sys.executable, "-c", passed, str(registry), version], env=env, check=True, timeout=120
        )

        promoted = wait_for(lambda: finished_run(api, promoter["id"]), "the promote run to finish")
        assert promoted["state_type"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        from export_core.registry import labels

        assert labels.read_labels(str(registry)).labels == {"stable": int(version)}
        moved = wait_for(lambda: events_named(api, "keras.model.promoted"), "keras.model.promoted")
        assert moved[0]["payload"]["version"] == int(version)
        assert moved[0]["payload"]["previous"] is None
    finally:
        serving.terminate()
        serving.wait(timeout=30)
        log.close()


def test_prefect_yaml_deploys_both_deployments(server, tmp_path):
    env, api, _ = server
    deploy_env = {
        **env,
        "KERAS_EXPORT_PROJECT_DIR": ROOT,
        "KERAS_EXPORT_SOURCE_PREFIX": str(tmp_path / "runs"),
        "KERAS_EXPORT_DESTINATION": str(tmp_path / "registry"),
    }
    deploy_all(deploy_env, "keras-export", "process", "deployments/prefect.yaml")
    scheduled = deployment(api, "export-newest-model", "scheduled-export")
    assert scheduled["work_pool_name"] == "keras-export"
    assert [s["schedule"]["cron"] for s in scheduled["schedules"]] == ["0 * * * *"]
    assert scheduled["parameters"]["destination"] == str(tmp_path / "registry")
    with_block = deployment(api, "export-newest-model", "scheduled-export-s3")
    assert with_block["parameters"]["credentials"] == "aws-credentials/registry-writer"
    triggered = deployment(api, "export-keras-model", "on-training-completed")
    automations = api.post("/automations/filter", json={}).json()
    mine = [
        a
        for a in automations
        if any(act.get("deployment_id") == triggered["id"] for act in a["actions"])
    ]
    assert mine and mine[0]["trigger"]["expect"] == ["training.run.completed"]
    parameters = mine[0]["actions"][0]["parameters"]
    assert parameters["model"] == "{{ event.payload.model_uri }}"


def test_kubernetes_work_pool_deployments_register(server, tmp_path):
    """prefect-k8s.yaml registers on a kubernetes pool (no cluster: no pod is run)."""
    env, api, _ = server
    deploy_env = {
        **env,
        "KERAS_EXPORT_IMAGE": "registry.example.com/keras-export:test",
        "KERAS_EXPORT_SOURCE_PREFIX": "s3://ml/runs",
        "KERAS_EXPORT_DESTINATION": "s3://registry/churn",
    }
    deploy_all(deploy_env, "keras-export-k8s", "kubernetes", "deployments/prefect-k8s.yaml")
    pool = api.get("/work_pools/keras-export-k8s").json()
    assert pool["type"] == "kubernetes"
    scheduled = deployment(api, "export-newest-model", "scheduled-export-k8s")
    assert scheduled["work_pool_name"] == "keras-export-k8s"
    assert scheduled["job_variables"]["image"] == "registry.example.com/keras-export:test"
    assert scheduled["parameters"]["credentials"] == "aws-credentials/registry-writer"
    assert deployment(api, "export-keras-model", "on-training-completed-k8s")["work_pool_name"] == (
        "keras-export-k8s"
    )
    with open(os.path.join(ROOT, "deployments", "Dockerfile")) as handle:
        dockerfile = handle.read()
    assert "WORKDIR /opt/keras-export" in dockerfile and '".[cpu,aws,gcp]"' in dockerfile


DASK_DRIVER = """
import json, sys
from prefect_dask import DaskTaskRunner
from keras_export.flows import export_keras_models
address, specs = sys.argv[1], json.loads(sys.argv[2])
runner = DaskTaskRunner(address=address)
print(json.dumps(export_keras_models.with_options(task_runner=runner)(exports=specs)))
"""


def test_batch_export_scales_out_on_a_real_dask_cluster(server, s3_server, tmp_path):
    """A dask scheduler and two worker processes, four exports to the S3 server."""
    import json
    import uuid

    import fsspec

    env, _api, _ = server
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    cluster_env = {**env, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=cluster_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [dask, "worker", address, "--nworkers", "1", "--nthreads", "1"],
                    env=cluster_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        options = s3_server.storage_options()
        bucket = f"dask{uuid.uuid4().hex[:10]}"
        fsspec.AbstractFileSystem.clear_instance_cache()
        fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", **options)
        fs.mkdir(bucket)
        specs, trained = [], []
        for i in range(4):
            model = models.functional_regressor()
            model.save(tmp_path / f"m{i}.keras")
            trained.append(model)
            base = f"s3://{bucket}/registry/m{i}"
            specs.append({"model": str(tmp_path / f"m{i}.keras"), "destination": base,
                          "storage_options": options, "serving_only": True})  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-c", DASK_DRIVER, address, json.dumps(specs)],
            env=cluster_env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        assert summary["succeeded"] == 4 and summary["failed"] == 0, summary
        x, _ = models.regression_batch()
        for i, result in enumerate(summary["results"]):
            local = tmp_path / f"landed{i}"
            prefix = result["path"].removeprefix("s3://") + "/"
            remote = fs.find(prefix)
            fs.get(remote, [str(local / r[len(prefix) :]) for r in remote])
            served = models.tf1_predict(str(local), {"features": x})["prediction"]
            assert_allclose(served, trained[i].predict(x, verbose=0), atol=1e-5)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
