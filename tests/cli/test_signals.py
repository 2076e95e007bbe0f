"""Signals as operations send them: a terminated CLI export stops as Ctrl-C does, and
no process of the CLI outlives it, even killed with SIGKILL; what a killed export
leaves is removed by the next export and by gc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from tests.helpers import CLI, version_folders

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc for the processes' parents"
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> str:
    """A model big enough that its build stays on disk for a while (about 1M weights)."""
    inputs = keras.Input((512,), name="features")
    hidden = keras.layers.Dense(1024, activation="relu")(inputs)
    hidden = keras.layers.Dense(512, activation="relu")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4, name="out")(hidden))
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    path = tmp_path_factory.mktemp("signals") / "model.keras"
    model.save(path)
    return str(path)


def descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        children = {p for p, parent in parents.items() if parent in frontier} - found
        found |= children
        frontier = children
    return found


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie has ended; only its parent's wait is missing
            living.add(pid)
    return living


def start_export(model_file: str, target: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    # a temporary API of its own, in a home that does not exist yet (as on a new machine)
    env["PREFECT_HOME"] = str(target.parent.parent / f"prefect-home-{target.name}")
    return subprocess.Popen(
        [CLI, "export", model_file, str(target), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_staging(folder: Path, process: subprocess.Popen, pattern: str) -> set[int]:
    """Waits until the export has begun writing its build; returns its processes."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the export ended before writing: {process.communicate()}")
        if folder.exists() and any(folder.glob(pattern)):
            return descendants(process.pid)
        time.sleep(0.01)
    pytest.fail("the export never began writing its build")


def wait_gone(pids: set[int], seconds: float = 15) -> set[int]:
    deadline = time.monotonic() + seconds
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def test_sigterm_stops_an_export_like_ctrl_c_and_leaves_no_process(model_file, tmp_path):
    base = tmp_path / "registry"
    process = start_export(model_file, base)
    children = wait_for_staging(base, process, ".staging-*")
    assert children, "the export has no temporary API server to watch"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == ["keras-export: terminated; nothing was published"], stderr
    assert version_folders(base) == [] and list(base.glob(".staging-*")) == []
    assert wait_gone(children) == set(), "processes of the CLI outlived it"


def test_sigkill_leaves_no_process_and_the_next_export_and_gc_remove_its_build(
    model_file, tmp_path
):
    base = tmp_path / "registry"
    process = start_export(model_file, base)
    children = wait_for_staging(base, process, ".staging-*")
    process.kill()
    process.wait(timeout=30)
    assert wait_gone(children) == set(), "Prefect's server outlived a killed CLI"
    assert list(base.glob(".staging-*")), "the killed export left no build (nothing to test)"
    collected = subprocess.run(
        [CLI, "gc", str(base), "--keep", "3"], capture_output=True, text=True, timeout=120
    )
    assert collected.returncode == 0, collected.stderr
    assert list(base.glob(".staging-*")) == []


def kill_while_writing(model_file: str, target: Path) -> None:
    process = start_export(model_file, target, "--no-timestamp")
    children = wait_for_staging(target.parent, process, f".{target.name}.staging-*")
    process.kill()
    process.wait(timeout=30)
    assert wait_gone(children) == set()
    assert list(target.parent.glob(f".{target.name}.staging-*"))


def test_a_killed_no_timestamp_export_is_swept_by_gc_and_by_the_next_export(model_file, tmp_path):
    parent = tmp_path / "models"
    kill_while_writing(model_file, parent / "churn")
    swept = subprocess.run(  # gc of the folder that holds the target
        [CLI, "gc", str(parent), "--keep", "1"], capture_output=True, text=True, timeout=120
    )
    assert swept.returncode == 0, swept.stderr
    assert list(parent.glob(".churn.staging-*")) == []
    kill_while_writing(model_file, parent / "fraud")
    done = start_export(model_file, parent / "churn", "--no-timestamp")
    _, stderr = done.communicate(timeout=600)
    assert done.returncode == 0, stderr
    assert list(parent.glob(".*.staging-*")) == []  # fraud's too: its process is gone
    assert (parent / "churn" / "saved_model.pb").exists()
