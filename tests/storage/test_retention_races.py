"""Retention under races: many writers and retention runs on one base, real servers only.

A "vanished" path is produced the way it happens in production: another client
(a second filesystem instance talking to the same server) removes it right after
our listing saw it. The only code of the tests' own in that path is a subclass of
the backend's filesystem choosing *when* that other client strikes; every request
goes to the real server (S3 and GCS: HTTP endpoints on 127.0.0.1, see conftest.py).
The multi-process tests need no such help: several processes really race.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid

import fsspec
import pytest

import export_core
from export_core import storage
from tests.helpers import ROOT
from tests.servers import free_port

HOURS = 3600
# ".staging-<seconds>-<hex>", and on local disk ".staging-<seconds>-<host>-<pid>-<hex>"
TIMED_STAGING = re.compile(r"^\.staging-(\d+)-(?:[A-Za-z0-9_.]+-\d+-)?[0-9a-f]{32}$")


def dest_of(backend, child: str | None = None) -> storage.Destination:
    uri = f"{backend.base}/{child}" if child else backend.base
    return storage.Destination.parse(uri, backend.options)


def put(fs, path: str, data: bytes = b"x") -> None:
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


def write_version(fs, base: str, version: int | str, *, proto=True, manifest=True) -> None:
    """A small version folder in publish order: variables, proto, manifest last."""
    put(fs, f"{base}/{version}/variables/variables.index")
    if proto:
        put(fs, f"{base}/{version}/saved_model.pb")
    if manifest:
        put(fs, f"{base}/{version}/export_manifest.json", b"{}")


def racing_destination(backend, after_listing: dict[str, list[str]]) -> storage.Destination:
    """A destination where, once ``path`` has been listed, another client removes
    ``after_listing[path]`` before we get to act on what we saw (once per path)."""
    other = type(backend.fs)(**backend.options, skip_instance_cache=True)

    class Racing(type(backend.fs)):
        def ls(self, path, detail=True, **kwargs):
            other.invalidate_cache()
            listing = other.ls(path, detail=detail, **kwargs)
            for victim in after_listing.pop(path.rstrip("/"), []):
                other.rm(victim, recursive=True)
            return listing

    fs = Racing(**backend.options, skip_instance_cache=True)
    return storage.Destination(backend.base, fs, backend.path)


def test_prune_and_sweep_of_a_base_that_does_not_exist_return_nothing(backend):
    dest = dest_of(backend)
    assert storage.prune_versions(dest, keep=1) == []
    assert storage.sweep_staging(dest, older_than=0) == []


def test_prune_survives_the_base_vanishing_after_listing(backend):
    for version in (1000, 1001, 1002):
        write_version(backend.fs, backend.path, version)
    dest = racing_destination(backend, {backend.path: [backend.path]})
    assert storage.prune_versions(dest, keep=1) == [], "gone before completeness was known"
    assert backend.listing() == []


def test_prune_survives_versions_vanishing_before_removal(backend):
    for version in (1000, 1001, 1002, 1003):
        write_version(backend.fs, backend.path, version)
    doomed = [f"{backend.path}/1000", f"{backend.path}/1001"]
    # Another run removes each version right after we saw it complete.
    dest = racing_destination(backend, {path: [path] for path in doomed})
    assert storage.prune_versions(dest, keep=2) == [1000, 1001]
    assert backend.listing() == ["1002", "1003"]


def test_sweep_survives_staging_and_claims_vanishing_before_removal(backend):
    old = time.time() - 7 * HOURS
    staging = storage.new_staging_name(old)
    put(backend.fs, f"{backend.path}/{staging}/saved_model.pb")
    claims = f"{backend.path}/{storage.CLAIMS_DIR}"
    put(backend.fs, f"{claims}/1000", storage.claim_record(1000, old))
    put(backend.fs, f"{claims}/1001", storage.claim_record(1001, old))
    dest = racing_destination(
        backend,
        {backend.path: [f"{backend.path}/{staging}"], claims: [f"{claims}/1000"]},
    )
    # The claim that vanished before it was read was released by its export, not swept.
    assert sorted(storage.sweep_staging(dest)) == sorted([staging, ".claims/1001"])
    assert storage.sweep_staging(dest_of(backend)) == [], "idempotent"
    assert staging not in backend.listing()


def test_sweep_removes_only_staging_and_claims_older_than_the_threshold(backend):
    now = time.time()
    fresh, old = storage.new_staging_name(), storage.new_staging_name(now - 7 * HOURS)
    for name in (fresh, old, ".staging-deadbeef"):
        put(backend.fs, f"{backend.path}/{name}/saved_model.pb")
    claims = f"{backend.path}/{storage.CLAIMS_DIR}"
    legacy_fresh, legacy_old = int(now), 1_700_000_000  # bare-uuid content: time from name
    put(backend.fs, f"{claims}/5", storage.claim_record(5))
    put(backend.fs, f"{claims}/6", storage.claim_record(6, now - 7 * HOURS))
    put(backend.fs, f"{claims}/{legacy_fresh}", uuid.uuid4().hex.encode())
    put(backend.fs, f"{claims}/{legacy_old}", uuid.uuid4().hex.encode())
    dest = dest_of(backend)

    swept = storage.sweep_staging(dest, sweep_untimed=False)
    assert sorted(swept) == sorted([old, ".claims/6", f".claims/{legacy_old}"])
    assert storage.sweep_staging(dest) == [".staging-deadbeef"], "untimed: the old rule"
    assert storage.sweep_staging(dest, older_than=HOURS) == [], "fresh ones stay"
    assert backend.listing() == sorted([fresh, storage.CLAIMS_DIR])
    assert backend.listing(claims) == sorted(["5", str(legacy_fresh)])
    swept = storage.sweep_staging(dest, older_than=0)
    assert sorted(swept) == sorted([fresh, ".claims/5", f".claims/{legacy_fresh}"])


def test_new_staging_names_and_claims_record_their_creation_time(backend, tmp_path):
    dest = dest_of(backend)
    build = tmp_path / "build"
    build.mkdir()
    (build / "saved_model.pb").write_bytes(b"proto")
    before = time.time()
    if dest.is_local:
        staging = storage.new_build_dir(dest, timestamped=True)
    else:
        # Non-timestamped: a staging prefix on every store (timestamped S3 builds go
        # straight into their claimed version, whose claim records the time below).
        staging = storage.stage(str(build), dest_of(backend, "model"), timestamped=False)
    name = staging.rstrip("/").rsplit("/", 1)[-1]
    assert TIMED_STAGING.match(name) or TIMED_STAGING.match(name.removeprefix(".model")), name
    assert before - 1 <= storage.staging_created(name) <= time.time()
    version = storage.claim_version(dest, start=1_700_000_000)
    if not dest.is_local:  # local claims are the mkdir of the version folder itself
        record = json.loads(backend.fs.cat_file(f"{backend.path}/.claims/{version}"))
        assert record["version"] == version
        assert before - 1 <= record["created"] <= time.time()
    assert storage.sweep_staging(dest) == [], "nothing fresh is swept"


def test_prune_removes_only_complete_versions_beyond_keep(backend):
    now = int(time.time())
    fs, base = backend.fs, backend.path
    write_version(fs, base, 1000, manifest=False)  # older tool, long ago: complete
    write_version(fs, base, now - 50)
    write_version(fs, base, now - 40, manifest=False)  # being published right now
    write_version(fs, base, now - 30)
    write_version(fs, base, now - 20, proto=False)  # half-written
    write_version(fs, base, now - 10)
    write_version(fs, base, now - 5)
    write_version(fs, base, "notes")  # not a version
    dest = dest_of(backend)
    assert storage.prune_versions(dest, keep=2, protect=now - 50) == [1000, now - 30]
    assert storage.prune_versions(dest, keep=2, protect=now - 50) == [], "idempotent"
    expected = [now - 50, now - 40, now - 20, now - 10, now - 5]
    assert backend.listing() == sorted([*map(str, expected), "notes"])
    collected = storage.collect_garbage(dest, keep=2)
    assert collected.to_dict() == {"pruned": [now - 50], "swept": []}


def test_retention_errors_are_storage_errors_naming_operation_and_path(tmp_path):
    options = {
        "key": "k",
        "secret": "s",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    fsspec.AbstractFileSystem.clear_instance_cache()
    dest = storage.Destination.parse("s3://registry/models", options)
    with pytest.raises(export_core.StorageError, match="Listing 's3://registry/models' failed"):
        storage.prune_versions(dest, keep=1)
    with pytest.raises(export_core.StorageError, match="cannot be reached"):
        storage.sweep_staging(dest)
    with pytest.raises(export_core.ExportValidationError, match="older_than must be"):
        storage.sweep_staging(storage.Destination.parse(str(tmp_path)), older_than=-1)


# --- several processes on one base ----------------------------------------------------

RACE_WORKER = r"""
import json, os, sys, traceback, types

# export_core/__init__ imports TensorFlow (~3 s a process here); the storage layer needs
# none of it, so the package is entered without running its __init__.
package = types.ModuleType("export_core")
package.__path__ = [os.path.join(os.getcwd(), "export_core")]
sys.modules["export_core"] = package
from export_core import storage


def publish_fake_version(dest):
    # A tiny complete version, published the way run_export does it.
    build = storage.new_build_dir(dest, timestamped=True)
    os.makedirs(os.path.join(build, "variables"))
    for rel, data in [
        ("variables/variables.index", b"index"),
        ("saved_model.pb", b"proto"),
        ("export_manifest.json", b"{}"),
    ]:
        with open(os.path.join(build, rel), "wb") as f:
            f.write(data)
    staging = None
    try:
        staging = storage.stage(build, dest, timestamped=True)
        return storage.publish(build, dest, True, staging).version
    finally:
        storage.cleanup(build, dest, staging)


uri, options, role, rounds, stop_file = sys.argv[1:]
dest = storage.Destination.parse(uri, json.loads(options))
print("ready", flush=True)
sys.stdin.readline()  # "go": every worker has started
published, runs = [], 0
try:
    while runs < int(rounds) if role == "writer" else not (runs and os.path.exists(stop_file)):
        if role == "writer":
            published.append(publish_fake_version(dest))
        storage.prune_versions(dest, keep=3, protect=published[-1] if published else None)
        storage.sweep_staging(dest)
        runs += 1
    print(json.dumps({"role": role, "published": published, "runs": runs}), flush=True)
except BaseException:
    print(json.dumps({"role": role, "error": traceback.format_exc()}), flush=True)
"""


def run_race(uri: str, options: dict, roles: list[str], rounds: int, tmp_path) -> list[dict]:
    """Starts one process per role, lets them go at once, returns their reports."""
    root = ROOT
    stop_file = str(tmp_path / "writers-done")
    args = [uri, json.dumps(options)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_WORKER, *args, role, str(rounds), stop_file],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        for role in roles
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        writers = [p for role, p in zip(roles, procs, strict=True) if role == "writer"]
        reports = [json.loads(p.stdout.readline()) for p in writers]
        open(stop_file, "w").close()  # the gc runs finish their current round
        reports += [json.loads(p.stdout.readline()) for p in procs if p not in writers]
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return reports


@pytest.mark.parametrize(("backend_name", "rounds"), [("local", 20), ("s3", 5)])
def test_concurrent_writers_and_gc_runs_keep_exactly_the_newest_complete(
    request, tmp_path, backend_name, rounds
):
    if backend_name == "local":
        uri, options = str(tmp_path / "registry"), {}
    else:
        options = request.getfixturevalue("s3_server").storage_options()
        uri = f"s3://b{uuid.uuid4().hex[:12]}/registry"
    fsspec.AbstractFileSystem.clear_instance_cache()
    fs, base = fsspec.core.url_to_fs(uri, **options)
    if backend_name == "s3":
        fs.mkdir(base.split("/")[0])
    now = time.time()
    fresh, old = storage.new_staging_name(), storage.new_staging_name(now - 7 * HOURS)
    put(fs, f"{base}/{fresh}/saved_model.pb")  # a live export's staging
    put(fs, f"{base}/{old}/saved_model.pb")  # a dead one's
    live_claim, dead_claim = int(now) + 10**6, int(now) + 2 * 10**6
    put(fs, f"{base}/.claims/{live_claim}", storage.claim_record(live_claim))
    put(fs, f"{base}/.claims/{dead_claim}", storage.claim_record(dead_claim, now - 7 * HOURS))
    in_progress = int(now) - 100
    write_version(fs, base, in_progress, manifest=False)  # a publish not finished yet
    write_version(fs, base, "notes")

    reports = run_race(uri, options, ["writer", "writer", "writer", "gc"], rounds, tmp_path)
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, "\n".join(errors)
    published = sorted(v for r in reports for v in r["published"])
    assert len(set(published)) == 3 * rounds, "every publish got a version of its own"

    fs.invalidate_cache()
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False))
    versions = [int(n) for n in names if n.isdigit() and int(n) != in_progress]
    assert versions == published[-3:], "exactly the newest three complete versions"
    for version in versions:
        files = {p.rsplit("/", 1)[-1] for p in fs.find(f"{base}/{version}")}
        assert files == {"variables.index", "saved_model.pb", "export_manifest.json"}
    assert {str(in_progress), "notes", fresh} <= set(names), "unfinished work is untouched"
    assert old not in names
    claims = [p.rsplit("/", 1)[-1] for p in fs.ls(f"{base}/.claims", detail=False)]
    assert claims == [str(live_claim)]
