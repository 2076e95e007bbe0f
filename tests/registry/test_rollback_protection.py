"""Protected rollbacks: retention keeps every label's rollback targets, on real backends.

Each label remembers its last ``ROLLBACK_DEPTH`` previous holders; ``gc``,
``keep_versions`` and ``keras-export versions`` agree on what stays and why. Versions
are faked (the two files that make one complete) except where an export's own
retention is the point. Backends: local disk, fsspec memory, moto's S3 server and
fake-gcs-server on 127.0.0.1 (conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import export_core
from export_core import storage
from export_core.errors import ExportValidationError
from export_core.registry import labels
from export_core.storage import label_file
from tests import models
from tests.helpers import CLI, make_versions, write_version


def numbered(backend) -> list[int]:
    backend.fs.invalidate_cache()
    return sorted(int(n) for n in backend.listing() if n.isdigit())


def promote_all(backend, label: str, *versions: int) -> None:
    for version in versions:
        labels.promote(backend.base, version, label, backend.options)


def dest_of(backend) -> storage.Destination:
    return storage.Destination.parse(backend.base, backend.options)


def test_rollback_targets_survive_gc_keep_1_and_each_rollback(backend):
    assert labels.ROLLBACK_DEPTH == 3, "the README documents 3"
    make_versions(backend, 1, 2, 3, 4, 5, 6, 7, 8)
    promote_all(backend, "stable", 2, 3, 4, 5, 6)
    doc = labels.read_labels(backend.base, backend.options)
    assert doc.rollback_targets == {"stable": (3, 4, 5)}, "newest last, at most the depth"
    dest = dest_of(backend)
    assert storage.retention_plan(dest, keep=1) == {
        1: (),
        2: (),  # a holder beyond the depth: it may go
        3: ("rollback:stable",),
        4: ("rollback:stable",),
        5: ("rollback:stable",),
        6: ("label:stable",),
        7: (),
        8: ("newest",),
    }
    assert storage.collect_garbage(dest, keep=1).pruned == (1, 2, 7)
    assert numbered(backend) == [3, 4, 5, 6, 8]
    for target, left in ((5, [3, 4, 5, 8]), (4, [3, 4, 8]), (3, [3, 8])):
        change = labels.rollback(backend.base, "stable", backend.options)
        assert (change.previous, change.version) == (target + 1, target)
        storage.collect_garbage(dest, keep=1)
        assert numbered(backend) == left, "the label's version and its remaining targets stay"
    with pytest.raises(ExportValidationError, match="no holder before 3 .*its last 3 previous"):
        labels.rollback(backend.base, "stable", backend.options)


@pytest.mark.parametrize("backend", ["local", "s3"], indirect=True)  # GCS: 15 s, same code
def test_keep_versions_after_an_export_spares_rollback_targets(backend):
    make_versions(backend, 1, 2, 3, 4, 5)
    promote_all(backend, "stable", 1, 2, 3, 4)  # targets 1, 2, 3
    result = export_core.run_export(
        models.functional_regressor(),
        backend.base,
        storage_options=backend.options,
        serving_only=True,
        keep_versions=1,
    )
    assert numbered(backend) == [1, 2, 3, 4, result.version], "only 5 went"
    assert labels.rollback(backend.base, "stable", backend.options).version == 3


def test_history_is_trimmed_in_the_same_write_yet_rollback_works(backend, monkeypatch):
    monkeypatch.setattr(label_file, "HISTORY_LIMIT", 6)
    make_versions(backend, 1, 2, 3, 4)
    held = [1 + i % 4 for i in range(11)]  # 1 2 3 4 1 2 ... never the same twice running
    promote_all(backend, "stable", *held)
    stored = json.loads(backend.fs.cat_file(f"{backend.path}/labels.json"))
    assert len(stored["history"]) == 6, "each write keeps the newest events only"
    assert [e["version"] for e in stored["history"]] == held[-6:]
    assert stored["rollback_targets"] == {"stable": held[-4:-1]}
    for target in reversed(held[-4:-1]):
        assert labels.rollback(backend.base, "stable", backend.options).version == target
    doc = labels.read_labels(backend.base, backend.options)
    assert len(doc.history) == 6 and doc.history[-1].action == "rollback"


def test_a_retried_rollback_is_recognised_in_a_full_history(tmp_path, monkeypatch):
    """The answer of the write that records a rollback is lost (the write landed, the
    client saw a conflict): the next round finds the event by its id in the trimmed
    history and does not roll back a second time."""
    assert labels.HISTORY_LIMIT == 100, "the README documents 100"
    base = str(tmp_path / "registry")
    for version in (1, 2, 3):
        write_version(storage.Destination.parse(base).fs, base, version)
    doc = label_file.LabelDocument()
    for i in range(150):  # held: 1 2 3 1 2 3 ... 3
        previous = doc.labels.get("stable")
        event = labels.LabelEvent("stable", 1 + i % 3, previous, "t", "me", "promote", f"e{i}")
        doc = doc.with_event(event)
    assert len(doc.history) == 100 and doc.rollback_targets == {"stable": (3, 1, 2)}
    with open(f"{base}/labels.json", "w") as handle:
        json.dump(doc.to_dict(), handle)

    real, lost = labels.write_if_unchanged, []

    def answer_lost(fs, path, body, token):
        landed = real(fs, path, body, token)
        if landed and not lost:
            lost.append(body)
            return False  # as if the store's answer never arrived
        return landed

    monkeypatch.setattr(labels, "write_if_unchanged", answer_lost)
    change = labels.rollback(base, "stable")
    assert lost and (change.previous, change.version, change.changed) == (3, 2, True)
    after = labels.read_labels(base)
    assert after.labels == {"stable": 2} and after.rollback_targets == {"stable": (3, 1)}
    assert len(after.history) == 100 and after.history[-1].action == "rollback"
    assert [e.action for e in after.history].count("rollback") == 1


OLD_HISTORY = [  # as releases before rollback_targets wrote it: labels and history only
    ("stable", 1, None, "label"),
    ("stable", 2, 1, "promote"),
    ("stable", 3, 2, "promote"),
    ("stable", 2, 3, "rollback"),
    ("stable", 4, 2, "promote"),
    ("canary", 5, None, "label"),
]


def test_an_old_labels_json_still_gives_the_right_rollback_targets(backend):
    make_versions(backend, 1, 2, 3, 4, 5, 6)
    events = [
        {"label": k, "version": v, "previous": p, "action": a, "at": "t", "by": "old", "id": str(i)}
        for i, (k, v, p, a) in enumerate(OLD_HISTORY)
    ]
    old = {"labels": {"stable": 4, "canary": 5}, "history": events}
    backend.fs.pipe_file(f"{backend.path}/labels.json", json.dumps(old).encode())
    doc = labels.read_labels(backend.base, backend.options)
    assert doc.rollback_targets == {"stable": (1, 2)} and doc.rollback_target("canary") is None
    assert storage.collect_garbage(dest_of(backend), keep=1).pruned == (3,)
    assert labels.rollback(backend.base, "stable", backend.options).version == 2
    stored = json.loads(backend.fs.cat_file(f"{backend.path}/labels.json"))
    assert stored["rollback_targets"] == {"stable": [1]}, "written in the new form from now on"
    assert len(stored["history"]) == len(OLD_HISTORY) + 1, "the old history is kept"
    assert labels.rollback(backend.base, "stable", backend.options).version == 1


@pytest.mark.parametrize("backend", ["local", "s3", "gcs"], indirect=True)
def test_versions_says_why_and_gc_does_what_it_says(backend):
    make_versions(backend, 1, 2, 3, 4, 5, 6, 7)
    promote_all(backend, "stable", 1, 2, 3)
    labels.set_label(backend.base, "canary", 5, backend.options)
    write_version(backend.fs, backend.path, 8, manifest=False)  # an old tool's: complete
    publishing = int(time.time())  # proto, no manifest yet: a publish still writing it
    write_version(backend.fs, backend.path, publishing, manifest=False)
    backend.fs.makedirs(f"{backend.path}/{publishing + 1}/variables", exist_ok=True)
    backend.fs.pipe_file(f"{backend.path}/{publishing + 1}/variables/variables.index", b"x")
    write_version(backend.fs, backend.path, "0042")  # not a canonical int64: never a version
    options = ["--storage-options", json.dumps(backend.options)] if backend.options else []

    def cli(*args: str) -> str:
        done = subprocess.run([CLI, *args, *options], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = {
        v["version"]: v["kept_because"]
        for v in json.loads(cli("--json", "versions", backend.base, "--keep", "2"))
    }
    assert listed == {
        1: ["rollback:stable"],
        2: ["rollback:stable"],
        3: ["label:stable"],
        4: [],
        5: ["label:canary"],
        6: [],
        7: ["keep"],
        8: ["newest"],
        publishing: ["publishing"],
        publishing + 1: ["incomplete"],
    }
    text = cli("versions", backend.base).splitlines()
    assert "[stable]  kept: label:stable  " in text[2] and "kept: -  " in text[3]
    assert "kept: newest  " in text[7] and "0042" not in "".join(text)
    gc = json.loads(cli("--json", "gc", backend.base, "--keep", "2"))
    assert gc["pruned"] == [v for v, why in listed.items() if not why] == [4, 6]
    after = json.loads(cli("--json", "versions", backend.base, "--keep", "2"))
    assert all(v["kept_because"] for v in after), "nothing left that gc would remove"
    shown = cli("labels", backend.base)
    assert "stable  3  (rollback to 2, 1)" in shown
