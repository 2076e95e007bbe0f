"""The keras-export command, through its installed entry point."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import export_core
from tests import models
from tests.helpers import CLI


def run(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, **kwargs
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """One export through `keras-export export` (the flow on Prefect's embedded API)."""
    root = tmp_path_factory.mktemp("cli")
    model = models.functional_regressor()
    model.save(root / "model.keras")
    done = run(
        "--json",
        "export",
        str(root / "model.keras"),
        str(root / "registry"),
        env={"PREFECT_HOME": str(root / "prefect-home")},
    )
    assert done.returncode == 0, done.stderr
    return root, json.loads(done.stdout)


def test_export_prints_json_result(published):
    root, result = published
    assert result["modes"] == ["serve", "train", "eval"]
    assert os.path.exists(os.path.join(result["path"], "export_manifest.json"))


def test_inspect_shows_metagraphs_signatures_and_manifest(published):
    _, result = published
    text = run("inspect", result["path"])
    assert text.returncode == 0, text.stderr
    assert "MetaGraph tags ['train']" in text.stdout
    assert "input  prediction_target: float32 [None, 2]" in text.stdout
    assert "manifest: created" in text.stdout
    data = json.loads(run("--json", "inspect", result["path"]).stdout)
    assert [m["tags"] for m in data["meta_graphs"]] == [["serve"], ["train"], ["eval"]]
    assert data["manifest"]["files"]["saved_model.pb"]["sha256"]


def test_verify_with_model_passes_and_tampering_fails_with_exit_4(published, tmp_path):
    import shutil

    root, result = published
    ok = run("verify", result["path"], "--model", str(root / "model.keras"), "--full")
    assert ok.returncode == 0, ok.stderr
    assert "files match the manifest" in ok.stdout and "vs model" in ok.stdout
    assert "tf2:train" in ok.stdout and "tf2:eval" in ok.stdout  # --full: both loaders, all
    copy = tmp_path / "tampered"
    shutil.copytree(result["path"], copy)
    data = copy / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    bad = run("verify", str(copy))
    assert bad.returncode == 4
    assert "differs from the manifest" in bad.stderr


def test_versions_flags_incomplete_and_unverified(published):
    root, result = published
    registry = root / "registry"
    (registry / "1000").mkdir()  # incomplete: no saved_model.pb
    legacy = export_core.export_saved_model(models.functional_regressor(), str(registry))
    os.remove(os.path.join(legacy, "export_manifest.json"))  # as an older tool would write
    text = run("versions", str(registry))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert lines[0].startswith("1000  INCOMPLETE, UNVERIFIED")
    assert f"{result['version']}  complete, verified" in text.stdout
    assert lines[-1].startswith(os.path.basename(legacy)), "newest last"
    assert "complete, UNVERIFIED" in lines[-1]


def test_gc_keeps_newest_and_sweeps_staging(tmp_path):
    registry = tmp_path / "registry"
    paths = [
        export_core.export_saved_model(models.functional_regressor(), str(registry))
        for _ in range(3)
    ]
    (registry / ".staging-deadbeef").mkdir()
    (registry / "notes").mkdir()
    done = run("--json", "gc", str(registry), "--keep", "1")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["pruned"] == [int(os.path.basename(p)) for p in paths[:2]]
    assert data["swept"] == [".staging-deadbeef"]
    assert sorted(os.listdir(registry)) == sorted([os.path.basename(paths[2]), "notes"])


def test_progress_bar_on_a_terminal_only(s3_server, published, tmp_path):
    import pty
    import uuid

    import fsspec

    _, result = published
    bucket = f"b{uuid.uuid4().hex[:12]}"
    options = s3_server.storage_options()
    fsspec.AbstractFileSystem.clear_instance_cache()
    fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", **options)
    fs.mkdir(bucket)
    fs.put(result["path"], f"{bucket}/m/1", recursive=True)
    args = ["--storage-options", json.dumps(options), "inspect", f"s3://{bucket}/m/1"]
    quiet = run(*args)
    assert quiet.returncode == 0, quiet.stderr
    assert "download [" not in quiet.stderr, "no bar when stderr is not a terminal"
    leader, follower = pty.openpty()
    shown = subprocess.run([CLI, *args], stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    terminal = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    assert shown.returncode == 0
    assert b"download [####" in terminal and b"MB" in terminal


def test_versions_show_labels_and_a_metadata_field(tmp_path):
    registry = tmp_path / "registry"
    first = export_core.run_export(
        models.functional_regressor(), str(registry), metadata={"auc": 0.8}
    )
    second = export_core.run_export(
        models.functional_regressor(), str(registry), metadata={"auc": 0.9}
    )
    done = run("label", str(registry), "stable", str(first.version))
    assert done.returncode == 0, done.stderr
    text = run("versions", str(registry), "--field", "auc")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert lines[0].startswith(f"{first.version}  complete, verified") and "[stable]" in lines[0]
    assert "auc=0.8" in lines[0] and "auc=0.9" in lines[1] and "[" not in lines[1]
    data = json.loads(run("--json", "versions", str(registry)).stdout)
    assert [v["labels"] for v in data] == [["stable"], []]
    assert data[1]["metadata"] == {"auc": 0.9} and data[1]["version"] == second.version
