# ruff: noqa: E501 - the table of cases reads best one case per line
"""Every bad input: one clear line, the documented exit code, no traceback, nothing written.

One table of cases. Each runs the installed ``keras-export``; afterwards stderr is a
single ``keras-export: <kind>: ...`` line (no "Traceback", no Prefect or TensorFlow
output), the exit code is the documented one, and the destination (with a version
published before) is exactly as it was. The same cases with ``--json`` give a
parseable error object on stdout. How long each takes to fail is measured in
``bench/cli_latency.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import zipfile

import keras
import numpy as np
import pytest

from tests import models
from tests.helpers import CLI, files_under

LINE = r"^keras-export: (invalid input|storage error|export failed|verification failed|interrupted)"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs good and bad, and a registry holding one published version."""
    import export_core

    root = tmp_path_factory.mktemp("cli-errors")
    model = models.functional_regressor()
    model.save(root / "model.keras")
    data = (root / "model.keras").read_bytes()
    (root / "truncated.keras").write_bytes(data[: len(data) // 2])
    (root / "text.keras").write_text("not a model\n")
    (root / "legacy.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (root / "a-file").write_text("x")
    registry = root / "registry"
    published = export_core.export_saved_model(model, str(registry))
    shutil.copytree(published, root / "savedmodel")
    taken = root / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    (root / "empty").mkdir()
    np.savez(root / "wrong-shape.npz", features=np.zeros((2, 5), "float32"))
    np.savez(root / "wrong-name.npz", pixels=np.zeros((2, 3), "float32"))
    bad = models.functional_regressor()
    bad.layers[1].kernel.assign(np.full((3, 5), np.nan, "float32"))
    bad.save(root / "nan.keras")
    corrupt = root / "corrupt"
    shutil.copytree(published, corrupt)
    index = corrupt / "variables" / "variables.data-00000-of-00001"
    raw = bytearray(index.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    index.write_bytes(bytes(raw))
    for name, content in (("badproto", os.urandom(4096)), ("textproto", b"not a proto at all\n")):
        shutil.copytree(published, root / name)
        (root / name / "saved_model.pb").write_bytes(content)
        (root / name / "export_manifest.json").unlink()
    other = keras.Sequential([keras.Input((5,), name="features"), keras.layers.Dense(2)])
    other.save(root / "other-inputs.keras")
    with (
        zipfile.ZipFile(root / "model.keras") as good,
        zipfile.ZipFile(root / "bad-config.keras", "w") as bad,
    ):
        for item in good.infolist():
            data = b"{not json" if item.filename == "config.json" else good.read(item)
            bad.writestr(item, data)
    return root


def M(root) -> str:  # noqa: N802 - the good model, short for the table
    return str(root / "model.keras")


# Mistakes that need neither TensorFlow nor Prefect to see: refused before either is
# imported (test_fast_mistakes_import_neither_tensorflow_nor_prefect).
FAST = {
    "destination under a file": (lambda r: ["export", M(r), str(r / "a-file" / "models")], 2, "lies under .*a-file, which is a file"),
    "modes with a bogus one": (lambda r: ["export", M(r), str(r / "registry"), "--modes", "serve,bogus"], 2, "'bogus'"),
    "custom object without a name": (lambda r: ["export", M(r), str(r / "registry"), "--custom-object", "my_layers"], 2, "is not 'package.module:NAME'"),
    "custom object of no module": (lambda r: ["export", M(r), str(r / "registry"), "--custom-object", "no_such_module_xyz:Layer"], 2, "no module 'no_such_module_xyz'"),
    "compare label that no version holds": (lambda r: ["export", M(r), str(r / "registry"), "--compare-label", "nosuch"], 2, "holds the label 'nosuch'"),
    ".keras whose config.json is not JSON": (lambda r: ["export", str(r / "bad-config.keras"), str(r / "registry")], 2, "config.json is not JSON"),
    "destination is a file": (lambda r: ["export", M(r), str(r / "a-file")], 2, "is a file"),
}  # fmt: skip

CASES = {
    "model missing": (lambda r: ["export", str(r / "nope.keras"), str(r / "registry")], 2, "does not exist"),
    "text file named .keras": (lambda r: ["export", str(r / "text.keras"), str(r / "registry")], 2, "not a complete .keras archive"),
    "truncated .keras": (lambda r: ["export", str(r / "truncated.keras"), str(r / "registry")], 2, "not a complete .keras archive|corrupt"),
    "h5 file": (lambda r: ["export", str(r / "legacy.h5"), str(r / "registry")], 2, "legacy HDF5"),
    "SavedModel as model": (lambda r: ["export", str(r / "savedmodel"), str(r / "registry")], 2, "is a SavedModel folder"),
    "unknown scheme": (lambda r: ["export", M(r), "foo://bucket/x"], 2, "no fsspec filesystem"),
    "malformed storage options": (lambda r: ["export", M(r), str(r / "registry"), "--storage-options", "{bad"], 2, "not valid JSON"),
    "storage options not an object": (lambda r: ["--storage-options", "[1]", "versions", str(r / "registry")], 2, "must be a JSON object"),
    "signature bad dtype": (lambda r: ["export", M(r), str(r / "registry"), "--input-signature", '[{"shape": [null, 3], "dtype": "floaty"}]'], 2, "not a TensorFlow dtype"),
    "signature bad shape": (lambda r: ["export", M(r), str(r / "registry"), "--input-signature", '[{"shape": "3"}]'], 2, "needs \"shape\""),
    "signature wrong rank": (lambda r: ["export", M(r), str(r / "registry"), "--input-signature", '[{"shape": [null, 3, 1], "name": "features"}]'], 2, r"expects shape \(None, 3\), got \(None, 3, 1\)"),
    "sample inputs wrong shape": (lambda r: ["export", M(r), str(r / "registry"), "--sample-inputs", str(r / "wrong-shape.npz")], 2, r"input 'features' expects shape \(None, 3\), got \(2, 5\)"),
    "sample inputs wrong name": (lambda r: ["export", M(r), str(r / "registry"), "--sample-inputs", str(r / "wrong-name.npz")], 2, "missing \\['features'\\]"),
    "sample inputs missing": (lambda r: ["export", M(r), str(r / "registry"), "--sample-inputs", str(r / "nope.npz")], 2, "does not exist"),
    "keep versions -1": (lambda r: ["export", M(r), str(r / "registry"), "--keep-versions", "-1"], 2, "whole number >= 1"),
    "keep versions 0": (lambda r: ["export", M(r), str(r / "registry"), "--keep-versions", "0"], 2, "whole number >= 1"),
    "gc keep 0": (lambda r: ["gc", str(r / "registry"), "--keep", "0"], 2, "whole number >= 1"),
    "NaN weights": (lambda r: ["export", str(r / "nan.keras"), str(r / "registry")], 2, "non-finite"),
    "no timestamp into non-empty folder": (lambda r: ["export", M(r), str(r / "taken"), "--no-timestamp"], 2, "not empty"),
    **FAST,
    "unreachable S3 endpoint": (lambda r: ["export", M(r), "s3://bucket/models", "--storage-options", '{"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s"}'], 3, "cannot be reached"),
    "inspect empty folder": (lambda r: ["inspect", str(r / "empty")], 2, "not a SavedModel"),
    "inspect missing": (lambda r: ["inspect", str(r / "nope")], 2, "does not exist"),
    "verify not a SavedModel": (lambda r: ["verify", str(r / "empty")], 2, "not a SavedModel"),
    "verify corrupted checkpoint": (lambda r: ["verify", str(r / "corrupt")], 4, "differs from the manifest"),
    "versions missing base": (lambda r: ["versions", str(r / "nope")], 2, "does not exist"),
    "versions of a version": (lambda r: ["versions", str(r / "savedmodel")], 2, "not a base of versions"),
    "gc of a file": (lambda r: ["gc", str(r / "a-file"), "--keep", "2"], 2, "is a file"),
    "inspect corrupt proto": (lambda r: ["inspect", str(r / "badproto")], 2, "not a readable SavedModel"),
    "inspect text as proto": (lambda r: ["inspect", str(r / "textproto")], 2, "not a readable SavedModel"),
    "diff corrupt proto": (lambda r: ["diff", str(r / "savedmodel"), str(r / "badproto")], 2, "not a readable SavedModel"),
    "verify corrupt proto": (lambda r: ["verify", str(r / "badproto")], 4, "not a readable SavedModel"),
    "verify with a model of other inputs": (lambda r: ["verify", str(r / "savedmodel"), "--model", str(r / "other-inputs.keras")], 2, r"expects shape \(None, 5\), got \(None, 3\)"),
    "verify with a corrupt model": (lambda r: ["verify", str(r / "savedmodel"), "--model", str(r / "truncated.keras")], 2, "not a complete .keras archive"),
    "unknown storage option": (lambda r: ["export", M(r), "s3://bucket/models", "--storage-options", '{"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s", "bogus": 1}'], 2, "storage option 'bogus'"),
    "signature of another dtype": (lambda r: ["export", M(r), str(r / "registry"), "--input-signature", '[{"shape": [null, 3], "dtype": "float64", "name": "features"}]'], 2, "is float32 in the model, got float64.*--cast-inputs"),
    "signature of int32 for float32": (lambda r: ["export", M(r), str(r / "registry"), "--input-signature", '[{"shape": [null, 3], "dtype": "int32", "name": "features"}]'], 2, "is float32 in the model, got int32"),
    "missing arguments": (lambda r: ["export"], 2, "required: model, dest"),
    "unknown option": (lambda r: ["versions", str(r / "registry"), "--frobnicate"], 2, "unrecognized arguments"),
}  # fmt: skip


def run(args: list[str], root, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(root.parent / f"{root.name}-prefect-home")}
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=900, env={**env, **env_extra}
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_one_line_and_writes_nothing(case, world):
    build, code, pattern = CASES[case]
    before = files_under(world)
    done = run(build(world), world)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == code, done.stderr[-3000:]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    import re

    assert re.match(LINE, lines[0]), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert files_under(world) == before, "nothing written, nothing removed"


@pytest.mark.parametrize("case", sorted(FAST))
def test_fast_mistakes_import_neither_tensorflow_nor_prefect(case, world, tripwire):
    build, code, pattern = FAST[case]
    done = run(build(world), world, PYTHONPATH=tripwire)
    assert "tripwire" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == code, done.stderr[-2000:]
    import re

    assert re.search(pattern, done.stderr), done.stderr[-2000:]


def test_the_python_api_says_what_the_cli_says(world):
    """One mistake, one message: the API runs the CLI's own checks."""
    import export_core
    from export_core.errors import ExportValidationError

    model = models.functional_regressor()
    with pytest.raises(ExportValidationError, match="is a file; pass a folder"):
        export_core.export_saved_model(model, str(world / "a-file"))
    with pytest.raises(ExportValidationError, match="lies under .*a-file, which is a file"):
        export_core.export_saved_model(model, str(world / "a-file" / "models"))
    with pytest.raises(ExportValidationError, match="'bogus'"):
        export_core.export_saved_model(model, str(world / "api"), modes=["serve", "bogus"])


@pytest.mark.parametrize("case", ["model missing", "signature wrong rank", "inspect empty folder"])
def test_json_errors_are_one_object_on_stdout(case, world):
    build, code, _ = CASES[case]
    done = run(["--json", *build(world)], world)
    assert done.returncode == code
    error = json.loads(done.stdout)["error"]
    assert error["exit_code"] == code and error["kind"] == "invalid input" and error["message"]
    assert not done.stderr.strip()


def test_debug_shows_the_traceback(world):
    done = run(["--debug", "inspect", str(world / "empty")], world)
    assert done.returncode == 2 and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("keras-export: invalid input")


def test_interrupt_stops_publishes_nothing_and_says_so(tmp_path):
    """Ctrl-C while the export runs: one line, exit 130, no version, no staging."""
    import keras

    inputs = keras.Input((512,), name="x")
    hidden = keras.layers.Dense(2048, name="wide")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="y")(hidden))
    model.compile("adam", "mse")
    model.save(tmp_path / "wide.keras")
    registry = tmp_path / "registry"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    process = subprocess.Popen(
        [CLI, "export", str(tmp_path / "wide.keras"), str(registry)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not registry.exists():  # the build has started
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines() == ["keras-export: interrupted; nothing was published"]
    leftovers = [n for n in os.listdir(registry)] if registry.exists() else []
    assert not [n for n in leftovers if n.isdigit()], leftovers
    assert not [n for n in leftovers if n.startswith(".staging")], leftovers
