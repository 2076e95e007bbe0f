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
import tempfile

from export_core.storage.names import host_name, process_alive

log = logging.getLogger(__name__)

PREFIX = "keras-export-build-"


def new_build_dir() -> str:
    """A fresh folder for one build, after removing those of this host's dead exports."""
    sweep_orphaned()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{host_name()}-{os.getpid()}-")


def sweep_orphaned(root: str | None = None) -> list[str]:
    """Removes the build folders under ``root`` whose export's process is gone.

    Returns the folders removed. Only folders named by this host are considered.
    """
    root = root or tempfile.gettempdir()
    pattern = re.compile(rf"^{re.escape(PREFIX + host_name())}-(\d+)-")
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match is None or process_alive(int(match.group(1))):
            continue
        path = os.path.join(root, name)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            log.info("Removed %s, left by an export whose process is gone.", path)
            removed.append(path)
    return removed
