"""Installable where users are: the wheel's import names, platforms, backends, one TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import CLI, ROOT

PIP = [sys.executable, "-m", "pip"]
# Every platform tag a wheel for that machine may carry, as pip --platform wants them.
PLATFORMS = {
    "linux-x86_64": ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_27_x86_64"],
    "linux-aarch64": ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "manylinux_2_27_aarch64"],
    "macos-arm64": [f"macosx_{v}_0_arm64" for v in (11, 12, 13, 14, 15)],
    "windows-amd64": ["win_amd64"],
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The wheel and sdist ``python -m build`` makes from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), ROOT],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    names = sorted(os.listdir(out))
    wheel = next(str(out / n) for n in names if n.endswith(".whl"))
    sdist = next(str(out / n) for n in names if n.endswith(".tar.gz"))
    return wheel, sdist


def test_wheel_installs_only_names_that_belong_to_the_project(dist):
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(
            next(n for n in names if n.endswith("entry_points.txt"))
        ).decode()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"export_core", "keras_export"}
    sources = {
        os.path.relpath(os.path.join(folder, name), ROOT)
        for package in ("export_core", "flows", "tasks", "keras_export")
        for folder, _, files in os.walk(os.path.join(ROOT, package))
        for name in files
        if name.endswith(".py")
    }
    installed = {
        n.replace("keras_export/", "", 1)
        if n.startswith(("keras_export/flows/", "keras_export/tasks/"))
        else n
        for n in names
    }
    assert sources <= installed, sorted(sources - installed)
    assert "export_core/py.typed" in names and "keras_export/py.typed" in names
    assert "keras-export = keras_export.cli.main:entry" in entry_points


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_built_package_installs_beside_a_users_own_tasks_module(dist, kind, tmp_path):
    wheel, sdist = dist
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    # --no-deps: the import names are under test here, not TensorFlow's 600 MB.
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", wheel if kind == "wheel" else sdist],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    user = tmp_path / "user_code"
    for name in ("tasks", "flows"):
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text(f"OWNER = 'user {name}'\n")
    # Files, not imports, for the installed side: importing it needs TensorFlow.
    probe = (
        "import importlib.util, json, os, tasks, flows, keras_export\n"
        "here = os.path.dirname(keras_export.__file__)\n"
        "files = [os.path.join(here, 'tasks', 'steps.py'),"
        " os.path.join(here, 'flows', 'export.py'), os.path.join(here, 'cli', 'main.py'),"
        " importlib.util.find_spec('export_core').origin]\n"
        "print(json.dumps([tasks.OWNER, flows.OWNER] + [f for f in files if os.path.isfile(f)]))\n"
    )
    run = subprocess.run(
        [python, "-c", probe],
        cwd=str(user),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(user)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    owners = json.loads(run.stdout)
    assert owners[:2] == ["user tasks", "user flows"]
    assert len(owners) == 6 and all(str(venv) in origin for origin in owners[2:]), owners


def resolve(platform: str, requirement: str, tmp_path) -> list[str]:
    """What pip would install for ``requirement`` on another platform (dry run, no build)."""
    command = [*PIP, "install", "--dry-run", "--quiet", "--report", "-", "--only-binary=:all:"]
    for tag in PLATFORMS[platform]:
        command += ["--platform", tag]
    command += ["--python-version", "3.11", "--target", str(tmp_path / platform), requirement]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"{platform}: {run.stderr[-3000:]}"
    report = json.loads(run.stdout)
    return [canonical(item["metadata"]["name"]) for item in report["install"]]


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_tensorflow_extra_resolves_on_every_platform_users_have(dist, platform, tmp_path):
    wheel, _ = dist
    names = resolve(platform, f"keras-savedmodel-export[tensorflow] @ file://{wheel}", tmp_path)
    assert "tensorflow" in names and "tensorflow-cpu" not in names, names
    assert {"keras", "prefect", "fsspec"} <= set(names)


def test_installing_beside_an_existing_tensorflow_adds_no_second_one(dist):
    wheel, _ = dist
    import importlib.metadata

    present = {canonical(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    assert present & {"tensorflow", "tensorflow-cpu"}, "this venv holds a TensorFlow"
    run = subprocess.run(
        [*PIP, "install", "--dry-run", "--quiet", "--report", "-", wheel],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    names = [canonical(i["metadata"]["name"]) for i in json.loads(run.stdout)["install"]]
    assert not [n for n in names if n.startswith(("tensorflow", "tf-nightly"))], names


def test_version_is_printed_by_the_cli():
    run = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=300)
    from importlib.metadata import version

    assert (
        run.returncode == 0
        and run.stdout.strip() == f"keras-export {version('keras-savedmodel-export')}"
    )


def without_backend() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}


def run_python(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_a_jax_default_in_the_environment_still_exports_with_tensorflow(tmp_path):
    code = (
        "import export_core, keras, sys\n"
        "m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
        f"p = export_core.export_saved_model(m, {str(tmp_path / 'r')!r})\n"
        "print(keras.config.backend(), 'jax' in sys.modules)\n"
    )
    run = run_python(code, tmp_path, KERAS_BACKEND="jax")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-2:] == ["tensorflow", "False"]


def test_a_keras_json_naming_another_backend_does_not_reach_the_cli(tmp_path):
    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    (tmp_path / "base").mkdir()
    run = subprocess.run(
        [CLI, "versions", str(tmp_path / "base")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**without_backend(), "KERAS_HOME": str(home)},
    )
    assert "keras/src/backend/jax" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert run.returncode in (0, 2), run.stderr


def test_keras_already_running_another_backend_gets_a_clear_error(torch_python):
    code = "import keras\nprint(keras.config.backend())\nimport export_core\n"
    run = subprocess.run(
        [torch_python, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "KERAS_BACKEND": "torch"},
    )
    assert run.stdout.split()[0] == "torch", run.stderr[-2000:]
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("export_core.errors.EnvironmentSetupError: Keras is already running")
    assert "'torch' backend" in last and "keras-export export" in last


def test_a_changed_private_api_on_an_unsupported_tensorflow_names_the_range(monkeypatch):
    from export_core import EnvironmentSetupError
    from export_core.tf_internals import tf_private

    @tf_private.guarded
    def moved_api():
        raise AttributeError("module has no attribute '_build_meta_graph'")

    monkeypatch.setattr(tf_private, "tensorflow_release", lambda: "2.99")
    with pytest.raises(EnvironmentSetupError, match=r"Supported: TensorFlow 2\.19, 2\.20, 2\.21"):
        moved_api()
    monkeypatch.setattr(tf_private, "tensorflow_release", lambda: "2.21")
    with pytest.raises(AttributeError):  # on a supported release it is a bug, shown as one
        moved_api()
