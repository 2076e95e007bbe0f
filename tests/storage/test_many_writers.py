"""Load: 16 writer processes and a gc loop on one base, on the S3 server and the GCS emulator.

Marked ``load`` (``pytest -m load`` runs them alone); the README's test command runs
them with the rest. Each writer is a separate Python process running a real export
(``run_export`` with ``keep_versions=3``); beside them ``keras-export gc --keep 3``
runs in a loop, and a watcher lists the base the whole time. One more writer, with
a bigger model, is killed with SIGKILL in the middle of its upload.

Checked: all 16 succeed with distinct versions (no duplicate publishes); the
watcher never saw a version whose ``saved_model.pb`` was visible before the rest
of its files; afterwards exactly the newest 3 complete versions remain, and no
staging folder or claim (and on S3 no open upload) but the killed writer's, which
gc removes only once it is older than the threshold (here: forced with
``--older-than 0``). The figures are printed for the README's table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import fsspec
import pytest

from tests.helpers import CLI, ROOT
from tests.servers import GCSServer, SlowProxy

pytestmark = pytest.mark.load

WRITERS = 16
SHARD = "variables/variables.data-00000-of-00001"
KEEP = 3
WRITER = """
import json, sys
import keras, numpy as np
import export_core
base, options, units = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
inputs = keras.Input((units,), name="x")
model = keras.Model(inputs, keras.layers.Dense(units, name="y")(inputs))
model.compile("sgd", "mse")
result = export_core.run_export(model, base, storage_options=options, keep_versions=3)
print(json.dumps({"version": result.version, "warnings": list(result.warnings)}))
"""


@pytest.fixture(scope="module")
def s3_process_server():
    from tests.servers import AuthS3Server

    server = AuthS3Server(auth=False).start()
    yield server
    server.stop()


class Watcher(threading.Thread):
    """Lists the base without pause; records every version it saw half visible."""

    def __init__(self, fs, base: str) -> None:
        super().__init__(daemon=True)
        self.fs, self.base = fs, base
        self.stop = threading.Event()
        self.seen: set[str] = set()
        self.half_visible: list[tuple[str, list[str]]] = []
        self.listings = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.fs.invalidate_cache()
                entries = self.fs.ls(self.base, detail=False)
            except FileNotFoundError:
                continue
            self.listings += 1
            for entry in entries:
                name = entry.rstrip("/").rsplit("/", 1)[-1]
                if name.isdigit():
                    self._check(entry, name)

    def _check(self, folder: str, name: str) -> None:
        try:
            files = [f.rsplit("/", 1)[-1] for f in self.fs.find(folder)]  # one listing
        except FileNotFoundError:
            return
        if "saved_model.pb" in files:
            self.seen.add(name)
            needed = {"variables.index", "variables.data-00000-of-00001", "saved_model.json"}
            if not needed <= set(files):
                self.half_visible.append((name, files))


def start_writer(base: str, options: dict, units: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, base, json.dumps(options), str(units)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def gc(base: str, options: dict, *extra: str) -> subprocess.CompletedProcess:
    command = [CLI, "--json", "--storage-options", json.dumps(options), "gc", base]
    return subprocess.run([*command, "--keep", str(KEEP), *extra], capture_output=True, text=True)


def staging_names(fs, path: str) -> list[str]:
    fs.invalidate_cache()
    try:
        names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    return [n for n in names if n.startswith(".staging-")]


def pending_shards(fs, path: str) -> list[str]:
    """S3: keys of the checkpoint shards whose multipart uploads are open under ``path``."""
    bucket, prefix = path.split("/", 1)
    listed = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=f"{prefix}/")
    return [u["Key"] for u in listed.get("Uploads", []) if u["Key"].endswith(SHARD)]


def kill_mid_upload(fs, path: str, victim: subprocess.Popen, backend: str) -> str:
    """SIGKILLs the victim while its checkpoint shard is uploading; returns what it left.

    On S3 the build goes into its claimed version as multipart uploads, completed
    only after verification: an open upload of the shard is an export in the middle
    (it leaves ``.claims``). Elsewhere staging receives the small files first and
    the big shard after them, so a staging folder with files but no shard yet is an
    upload in the middle.
    """
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if backend == "s3" and pending_shards(fs, path):
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            return ".claims"
        for name in staging_names(fs, path) if backend != "s3" else []:
            try:
                files = [f.rsplit("/", 1)[-1] for f in fs.find(f"{path}/{name}")]
            except FileNotFoundError:
                continue
            if files and SHARD.rsplit("/", 1)[-1] not in files:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                return name
        time.sleep(0.01)
    raise AssertionError(f"never saw the victim mid-upload (exit {victim.poll()})")


def slowed_server(backend: str, request) -> tuple:
    """The store, and a slow proxy in front of it for the victim. GCS hands out upload
    links on its external URL, so there the proxy is that URL, of a server of its own."""
    if backend == "s3":
        server = request.getfixturevalue("s3_process_server")
        slow = SlowProxy(int(server.url.rsplit(":", 1)[1])).start()
    else:
        server = GCSServer()
        slow = SlowProxy(server.port).start()
        server.external_url = slow.url
        server.start()
        request.addfinalizer(server.stop)
    request.addfinalizer(slow.stop)
    return server, slow


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_sixteen_writers_and_gc_share_one_base(backend, request):
    server, slow = slowed_server(backend, request)
    options = server.storage_options()
    scheme = "s3" if backend == "s3" else "gs"
    bucket = f"load{uuid.uuid4().hex[:10]}"
    fsspec.AbstractFileSystem.clear_instance_cache()
    fs, _ = fsspec.core.url_to_fs(f"{scheme}://{bucket}", **options)
    fs.mkdir(bucket)
    base_path, base = f"{bucket}/registry", f"{scheme}://{bucket}/registry"
    # The victim exports a 64 MB kernel alone first, and dies half-way through its upload,
    # which goes through a proxy slowing it to several seconds: a window the poll below
    # sees on a busy machine too.
    victim = start_writer(base, {**options, "endpoint_url": slow.url}, 4096)
    killed = kill_mid_upload(fs, base_path, victim, backend)
    watcher = Watcher(fs, base_path)
    watcher.start()
    started = time.monotonic()
    writers = [start_writer(base, options, 4) for _ in range(WRITERS)]
    gc_runs, gc_failures = 0, []
    while any(w.poll() is None for w in writers):
        done = gc(base, options)
        gc_runs += 1
        if done.returncode != 0:
            gc_failures.append(done.stderr)
    elapsed = time.monotonic() - started
    results = []
    for writer in writers:
        out, err = writer.communicate()
        assert writer.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    watcher.stop.set()
    watcher.join(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not gc_failures, gc_failures[:3]
    versions = [r["version"] for r in results]
    assert len(set(versions)) == WRITERS, "every publish has its own version: no duplicates"
    assert not watcher.half_visible, watcher.half_visible[:3]

    assert gc(base, options).returncode == 0
    fs.invalidate_cache()
    names = sorted(n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(base_path, detail=False))
    remaining = sorted(int(n) for n in names if n.isdigit())
    assert remaining == sorted(versions)[-KEEP:], "exactly the newest 3 complete versions"
    leftovers = [n for n in names if not n.isdigit()]
    assert leftovers == [killed], "only the killed writer's staging remains (too young to sweep)"
    if backend == "s3":
        assert pending_shards(fs, base_path), "the killed writer's upload is still open"
    assert gc(base, options, "--older-than", "0").returncode == 0
    fs.invalidate_cache()
    names = [n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(base_path, detail=False)]
    assert sorted(names) == [str(v) for v in remaining], "0 staging folders or claims left"
    if backend == "s3":
        assert pending_shards(fs, base_path) == [], "its uploads were aborted"
    print(
        f"\nLOAD {backend}: {WRITERS} writers + 1 killed, gc runs {gc_runs}, "
        f"versions seen by the watcher {len(watcher.seen)} in {watcher.listings} listings, "
        f"half-visible 0, duplicates 0, leftovers 0 after the forced sweep, {elapsed:.0f} s"
    )
