"""Local build folders of exports to remote destinations, and those killed exports left.

An export to S3, GCS or any other remote store builds its SavedModel in a folder
under the system's temporary directory and removes it when it ends, however it
ends, except when the process is killed (the kernel's OOM killer, ``kill -9``, a
lost node): then the folder stays, as big as the model's checkpoint (9 GB for 3 GB
of weights in all modes), and a worker that is killed again and again fills its
disk. Each folder's name carries the host and the process id of its export; a new
build removes the folders of this host whose process is gone. A folder of another
host (a temporary directory shared between containers) is never touched, and a
live process's folder is never removed, whatever its age.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile

log = logging.getLogger(__name__)

PREFIX = "keras-export-build-"


def new_build_dir() -> str:
    """A fresh folder for one build, after removing those of this host's dead exports."""
    sweep_orphaned()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{_host()}-{os.getpid()}-")


def sweep_orphaned(root: str | None = None) -> list[str]:
    """Removes the build folders under ``root`` whose export's process is gone.

    Returns the folders removed. Only folders named by this host are considered.
    """
    root = root or tempfile.gettempdir()
    pattern = re.compile(rf"^{re.escape(PREFIX + _host())}-(\d+)-")
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or _alive(int(match.group(1))):
            continue
        path = os.path.join(root, name)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            log.info("Removed %s, left by an export whose process is gone.", path)
            removed.append(path)
    return removed


def _host() -> str:
    """This host's name, as a folder name can hold it (no '-', which separates fields)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
