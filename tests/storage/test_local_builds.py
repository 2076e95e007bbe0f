"""Build folders of killed exports to remote stores are removed by the next build.

A real process creates its build folder and is killed with SIGKILL (nothing of it
runs after); the next build on this host removes that folder, and only that one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from export_core.storage import local_builds
from export_core.storage.names import host_name

CHILD = """
import sys
from export_core.storage import local_builds
path = local_builds.new_build_dir()
open(path + "/variables.data-00000-of-00001", "wb").write(b"x" * 100_000)
print(path, flush=True)
sys.stdin.read()  # until killed
"""


def killed_export_folder(tmp_path) -> str:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    path = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait()
    return path


def test_the_next_build_removes_the_folder_of_a_killed_export(tmp_path, monkeypatch):
    left = killed_export_folder(tmp_path)
    assert os.path.isfile(os.path.join(left, "variables.data-00000-of-00001"))
    own = tmp_path / f"{local_builds.PREFIX}{host_name()}-{os.getpid()}-mine"
    other_host = tmp_path / f"{local_builds.PREFIX}otherhost-{_dead_pid()}-theirs"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"{local_builds.PREFIX}{host_name()}-{sleeper.pid}-live"
        unrelated = tmp_path / "keras-export-src-123"
        for folder in (own, other_host, live, unrelated):
            folder.mkdir()
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

        fresh = local_builds.new_build_dir()

        assert not os.path.exists(left)
        assert all(p.is_dir() for p in (own, other_host, live, unrelated))
        assert os.path.isdir(fresh) and os.path.basename(fresh).startswith(
            f"{local_builds.PREFIX}{host_name()}-{os.getpid()}-"
        )
    finally:
        sleeper.kill()
        sleeper.wait()


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)
