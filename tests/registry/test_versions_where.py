"""``versions --where``: filtering versions by the metadata recorded in their manifests.

Versions are faked with a manifest holding only ``lineage.metadata`` (what an export's
``metadata`` becomes), on every backend of conftest.py; the CLI runs as installed.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from export_core.errors import ExportValidationError
from export_core.registry import versions
from export_core.registry.where import parse_condition
from tests.conftest import Backend
from tests.helpers import CLI, write_version

RECORDED = {
    1: {"auc": 0.85, "stage": "dev", "data": {"rows": 1000}},
    2: {"auc": 0.91, "stage": "prod", "data": {"rows": 5000}, "approved": True},
    3: {"auc": 0.95, "stage": "prod", "approved": False},
    4: None,  # exported without metadata
    5: {"auc": "high", "stage": "01"},  # a string where others have numbers
}


def publish_fakes(backend) -> None:
    for version, metadata in RECORDED.items():
        write_version(backend.fs, backend.path, version, manifest=False)
        manifest = {"lineage": {"metadata": metadata}} if metadata is not None else {}
        path = f"{backend.path}/{version}/export_manifest.json"
        backend.fs.pipe_file(path, json.dumps(manifest).encode())


def listed(backend, *where: str) -> list[int]:
    infos = versions.list_versions(backend.base, backend.options, where=list(where))
    return [info.version for info in infos]


def test_where_filters_by_recorded_metadata_on_every_backend(backend):
    publish_fakes(backend)
    assert listed(backend) == [1, 2, 3, 4, 5]
    assert listed(backend, "metadata.auc>=0.9") == [2, 3], "a string auc and no auc: no match"
    assert listed(backend, "metadata.auc > 0.91") == [3]
    assert listed(backend, "metadata.auc<0.9") == [1]
    assert listed(backend, "metadata.auc<=0.91") == [1, 2]
    assert listed(backend, "metadata.stage==prod") == [2, 3], "a bare string"
    assert listed(backend, 'metadata.stage=="prod"', "metadata.auc>=0.95") == [3], "all hold"
    assert listed(backend, "metadata.stage!=prod") == [1, 5], "a version without it: no match"
    assert listed(backend, "metadata.stage==01") == [5], "not JSON: the string as written"
    assert listed(backend, "metadata.data.rows>1000") == [2], "a dotted path"
    assert listed(backend, "metadata.approved==true") == [2]
    assert listed(backend, "metadata.approved!=true") == [3], "false, not 1 or a missing key"
    assert listed(backend, "metadata.auc>=high") == [5], "strings compare with strings"
    assert listed(backend, "metadata.nothing==null") == []


@pytest.mark.parametrize(
    "text",
    ["auc>=0.9", "metadata.auc=0.9", "metadata.auc>=", "metadata.>1", "metadata.a..b>1", "x"],
)
def test_a_malformed_condition_says_the_accepted_form(text):
    with pytest.raises(ExportValidationError, match=r"is not a condition: use metadata\.<key>"):
        parse_condition(text)


def test_cli_where_filters_and_a_malformed_one_exits_2(tmp_path):
    backend = Backend("local", str(tmp_path / "registry"), {})
    publish_fakes(backend)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)

    done = cli("--json", "versions", backend.base, "--where", "metadata.auc>=0.9")
    assert done.returncode == 0, done.stderr
    assert [v["version"] for v in json.loads(done.stdout)] == [2, 3]
    both = ["--where", "metadata.stage==prod", "--where", "metadata.data.rows>=5000"]
    text = cli("versions", backend.base, *both, "--field", "auc")
    assert text.returncode == 0 and text.stdout.startswith("2  complete"), text.stderr
    assert len(text.stdout.splitlines()) == 1 and "auc=0.91" in text.stdout
    bad = cli("versions", backend.base, "--where", "auc>=0.9")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "invalid input: --where 'auc>=0.9' is not a condition" in bad.stderr
    assert "metadata.<key>[.<key>...] <op> <value>" in bad.stderr
    as_json = cli("--json", "versions", str(tmp_path / "missing"), "--where", "metadata.auc~1")
    assert json.loads(as_json.stdout)["error"]["exit_code"] == 2, "checked before the store"
