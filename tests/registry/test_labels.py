"""Labels in ``<base>/labels.json``: round trips, compare-and-swap under real races, retention.

Every backend is real (see conftest.py): local disk, fsspec memory, moto's S3 server and
fake-gcs-server on 127.0.0.1. Versions are faked by writing the two files that make a
version complete (``saved_model.pb`` and ``export_manifest.json``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from export_core import storage
from export_core.errors import ExportValidationError, StorageError
from export_core.registry import labels
from tests.conftest import Backend
from tests.helpers import ROOT, make_versions, write_version


def numbered(backend) -> list[int]:
    backend.fs.invalidate_cache()
    return sorted(int(n) for n in backend.listing() if n.isdigit())


def test_labels_round_trip_on_every_backend(backend):
    make_versions(backend, 17, 18, 19)
    assert labels.read_labels(backend.base, backend.options) == labels.LabelDocument()
    labels.set_label(backend.base, "stable", 17, backend.options, actor="ci@build-1")
    labels.set_label(backend.base, "canary", 18, backend.options)
    doc = labels.promote(backend.base, 19, "canary", backend.options, actor="ana@laptop")
    again = labels.set_label(backend.base, "stable", 17, backend.options)
    assert again.document == doc.document and not again.changed, "a no-op writes nothing"
    assert (again.version, again.previous) == (17, 17)

    read = labels.read_labels(backend.base, backend.options)
    assert read == doc.document
    assert (doc.changed, doc.previous, doc.version) == (True, 18, 19)
    assert read.labels == {"stable": 17, "canary": 19}
    assert [(e.label, e.version, e.previous, e.action) for e in read.history] == [
        ("stable", 17, None, "label"),
        ("canary", 18, None, "label"),
        ("canary", 19, 18, "promote"),
    ]
    assert read.history[0].by == "ci@build-1" and read.history[2].by == "ana@laptop"
    assert "@" in read.history[1].by, "default actor: user@host"
    assert read.labels_of(19) == ("canary",) and read.labels_of(18) == ()
    assert labels.LabelDocument.from_dict(json.loads(json.dumps(read.to_dict()))) == read
    stored = json.loads(backend.fs.cat_file(f"{backend.path}/labels.json"))
    assert stored == read.to_dict()
    assert set(stored["history"][0]) == {"label", "version", "previous", "at", "by", "action", "id"}
    assert stored["history"][0]["at"].endswith("+00:00")
    assert "labels.json" in backend.listing(), "beside the versions, which stay integers"


def test_labels_refuse_bad_names_and_versions_that_are_not_complete(backend):
    make_versions(backend, 1)
    write_version(backend.fs, backend.path, 2, manifest=False)  # still being published
    for bad in ("", "1", "stable label", "-x", "a" * 64, None):
        with pytest.raises(ExportValidationError, match="A label starts with a letter"):
            labels.set_label(backend.base, bad, 1, backend.options)
    with pytest.raises(ExportValidationError, match="/2 is not a complete version"):
        labels.set_label(backend.base, "stable", 2, backend.options)
    with pytest.raises(ExportValidationError, match="/3 is not a complete version"):
        labels.promote(backend.base, 3, "stable", backend.options)
    with pytest.raises(ExportValidationError, match="integer >= 0"):
        labels.set_label(backend.base, "stable", True, backend.options)
    assert "labels.json" not in backend.listing(), "nothing written"


def test_rollback_walks_back_through_the_history(backend):
    make_versions(backend, 1, 2, 3)
    with pytest.raises(ExportValidationError, match="'stable' of .* is not set"):
        labels.rollback(backend.base, "stable", backend.options)
    for version in (1, 2, 3):
        labels.promote(backend.base, version, "stable", backend.options)
    assert labels.rollback(backend.base, "stable", backend.options).labels["stable"] == 2
    doc = labels.rollback(backend.base, "stable", backend.options, actor="oncall")
    assert doc.labels == {"stable": 1}
    assert (doc.history[-1].action, doc.history[-1].previous, doc.history[-1].by) == (
        "rollback",
        2,
        "oncall",
    )
    with pytest.raises(ExportValidationError, match="had no holder before 1"):
        labels.rollback(backend.base, "stable", backend.options)
    assert len(labels.read_labels(backend.base, backend.options).history) == 5


def test_rollback_refuses_a_previous_version_that_is_gone(backend):
    make_versions(backend, 1, 2)
    labels.set_label(backend.base, "stable", 1, backend.options)
    labels.promote(backend.base, 2, "stable", backend.options)
    backend.fs.rm(f"{backend.path}/1", recursive=True)
    with pytest.raises(ExportValidationError, match="/1 is not a complete version"):
        labels.rollback(backend.base, "stable", backend.options)
    assert labels.read_labels(backend.base, backend.options).labels == {"stable": 2}


def test_a_conflict_on_every_attempt_is_a_storage_error(backend):
    """Another writer really changes the document between each read and write."""
    make_versions(backend, 1, 2)
    dest = storage.Destination.parse(backend.base, backend.options)
    rounds = []

    def change(doc):
        rounds.append(len(doc.history))
        labels.set_label(backend.base, "other", 1 + len(rounds) % 2, backend.options)
        return doc.with_event(labels.LabelEvent("stable", 1, None, "now", "me", "label", "x"))

    with pytest.raises(StorageError, match="other writers changed it during each of 3 attempts"):
        labels.update_labels(dest, change, attempts=3)
    assert rounds == [0, 1, 2], "each attempt saw the other writer's last change"
    assert labels.read_labels(backend.base, backend.options).labels == {"other": 2}


def test_a_corrupt_document_is_a_storage_error_and_retention_removes_nothing(backend):
    make_versions(backend, 1, 2, 3)
    backend.fs.pipe_file(f"{backend.path}/labels.json", b'{"labels": {"stable": "one"}}')
    with pytest.raises(StorageError, match="labels.json' is not a label document"):
        labels.read_labels(backend.base, backend.options)
    with pytest.raises(StorageError, match="not a label document"):
        labels.set_label(backend.base, "stable", 1, backend.options)
    dest = storage.Destination.parse(backend.base, backend.options)
    with pytest.raises(StorageError, match="not a label document"):
        storage.prune_versions(dest, keep=1)
    assert numbered(backend) == [1, 2, 3]


def test_retention_keeps_labelled_versions_beyond_keep(backend):
    make_versions(backend, 1, 2, 3, 4, 5, 6)
    publishing = int(time.time())  # a version whose manifest is not written yet: not counted
    write_version(backend.fs, backend.path, publishing, manifest=False)
    labels.set_label(backend.base, "stable", 1, backend.options)
    labels.set_label(backend.base, "canary", 3, backend.options)
    labels.set_label(backend.base, "newest", 6, backend.options)  # within keep: counts
    dest = storage.Destination.parse(backend.base, backend.options)
    assert storage.prune_versions(dest, keep=2, protect=4) == [2]
    assert numbered(backend) == [1, 3, 4, 5, 6, publishing]
    labels.promote(backend.base, 5, "canary", backend.options)  # 3: canary's rollback target
    collected = storage.collect_garbage(dest, keep=2)
    assert collected.to_dict() == {"pruned": [4], "swept": []}
    assert numbered(backend) == [1, 3, 5, 6, publishing]


def test_retention_spares_a_version_labelled_while_it_runs(backend):
    """A label set on a doomed version after retention chose it still saves it."""
    if backend.name == "local":
        pytest.skip("local removal uses os calls, not fs.rm, so there is no hook here")
    make_versions(backend, 1, 2, 3)

    class LabelOnFirstRemoval(type(backend.fs)):
        def rm(self, path, *args, **kwargs):
            if path.endswith("/1/export_manifest.json"):  # another client, mid-run
                labels.set_label(backend.base, "stable", 2, backend.options)
            return super().rm(path, *args, **kwargs)

    fs = LabelOnFirstRemoval(**backend.options, skip_instance_cache=True)
    dest = storage.Destination(backend.base, fs, backend.path)
    assert storage.prune_versions(dest, keep=1) == [1]
    assert numbered(backend) == [2, 3]


def test_local_lock_a_dead_writer_left_is_broken_and_a_live_one_waited_for(tmp_path, monkeypatch):
    base = str(tmp_path / "registry")
    os.makedirs(f"{base}/1")
    for name in ("saved_model.pb", "export_manifest.json"):
        open(f"{base}/1/{name}", "wb").close()
    lock = f"{base}/labels.json.lock"
    with open(lock, "w") as handle:  # a writer that died an hour ago
        json.dump({"pid": 1, "created": time.time() - 3600, "id": "dead"}, handle)
    assert labels.set_label(base, "stable", 1).labels == {"stable": 1}
    assert sorted(os.listdir(base)) == ["1", "labels.json"], "lock, grave and temp files gone"

    from export_core.storage import conditional

    monkeypatch.setattr(conditional, "LOCK_WAIT", 0.3)
    with open(lock, "w") as handle:  # a live writer that never lets go
        json.dump({"pid": 1, "created": time.time(), "id": "live"}, handle)
    with pytest.raises(StorageError, match="stayed locked"):
        labels.promote(base, 1, "canary")
    assert json.load(open(lock))["id"] == "live", "a live lock is never broken"


# --- several writers at once -----------------------------------------------------------

WORKER = r"""
import json, sys
from export_core.registry import labels  # light: neither TensorFlow nor Prefect

uri, options, name, versions = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
print("ready", flush=True)
sys.stdin.readline()  # "go": every worker has started
for version in json.loads(versions):
    labels.promote(uri, version, "stable", storage_options=options, actor=name)
print("done", flush=True)
"""


def backend_named(request, tmp_path, name: str) -> Backend:
    if name == "local":
        return Backend("local", str(tmp_path / "registry"), {})
    if name == "memory":
        return Backend("memory", f"memory://b{uuid.uuid4().hex[:12]}/registry", {})
    bucket = f"b{uuid.uuid4().hex[:12]}"
    scheme = "s3" if name == "s3" else "gs"
    server = request.getfixturevalue(f"{name}_server")
    backend = Backend(name, f"{scheme}://{bucket}/registry", server.storage_options())
    backend.fs.mkdir(bucket)
    return backend


def assert_no_lost_update(doc: labels.LabelDocument, promoted: list[int]) -> None:
    history = doc.history
    assert sorted(e.version for e in history) == sorted(promoted), "each promote exactly once"
    assert len({e.id for e in history}) == len(history)
    assert history[0].previous is None
    for before, event in zip(history, history[1:], strict=False):
        assert event.previous == before.version, "every writer saw the one before it"
    assert doc.labels == {"stable": history[-1].version}


@pytest.mark.parametrize("backend_name", ["local", "s3", "gcs"])
def test_concurrent_promotes_from_processes_lose_no_update(request, tmp_path, backend_name):
    workers, rounds = 4, 5
    backend = backend_named(request, tmp_path, backend_name)
    plan = {f"w{w}": [100 * (w + 1) + r for r in range(rounds)] for w in range(workers)}
    make_versions(backend, *(v for versions in plan.values() for v in versions))
    options = json.dumps(backend.options)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, backend.base, options, name, json.dumps(mine)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name, mine in plan.items()
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * workers
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        assert [p.stdout.readline().strip() for p in procs] == ["done"] * workers
        for p in procs:
            assert p.wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    doc = labels.read_labels(backend.base, backend.options)
    assert_no_lost_update(doc, [v for versions in plan.values() for v in versions])
    by_worker = {name: [e.version for e in doc.history if e.by == name] for name in plan}
    assert by_worker == plan, "each worker's promotes in its own order"


def test_concurrent_promotes_from_threads_on_memory_lose_no_update(request, tmp_path):
    backend = backend_named(request, tmp_path, "memory")
    base = backend.base
    versions = list(range(1, 25))
    make_versions(backend, *versions)
    barrier = threading.Barrier(6)

    def promote_all(mine):
        barrier.wait()
        for version in mine:
            labels.promote(base, version, "stable")

    threads = [threading.Thread(target=promote_all, args=(versions[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_no_lost_update(labels.read_labels(base), versions)


@pytest.mark.parametrize("backend_name", ["local", "s3"])
def test_concurrent_cli_promotes_report_what_each_changed(request, tmp_path, backend_name):
    """Ten promotes at once, half of them to where another has just moved the label:
    each reports the move it made (its ``previous`` is what it replaced) or that
    nothing changed, and no-ops record nothing."""
    backend = backend_named(request, tmp_path, backend_name)
    make_versions(backend, 1, 2)
    cli = os.path.join(os.path.dirname(sys.executable), "keras-export")
    options = ["--storage-options", json.dumps(backend.options)] if backend.options else []
    procs = [
        subprocess.Popen(
            [cli, "promote", backend.base, str(1 + i % 2), "--label", "stable", "--json"] + options,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(10)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    history = labels.read_labels(backend.base, backend.options).history
    moves = sorted((r["previous"] or 0, r["version"]) for r in results if r["changed"])
    recorded = sorted((e.previous or 0, e.version) for e in history)
    assert moves == recorded, "one event per move, each with what it replaced"
    for r in results:
        if not r["changed"]:
            assert r["previous"] == r["version"], r
    text = subprocess.run(
        [cli, "promote", backend.base, str(history[-1].version), "--label", "stable"] + options,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "nothing changed" in text.stdout and "(was" not in text.stdout, text.stdout


def test_labels_and_the_cli_glue_import_neither_prefect_nor_tensorflow():
    code = (
        "import sys; import export_core.registry.labels, export_core.registry.serving_config; "
        "from keras_export.cli import registry_commands; "
        "print(sorted(m for m in ('prefect', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
