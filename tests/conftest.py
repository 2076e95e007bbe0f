"""Shared fixtures: small real Keras models and TensorFlow's own loaders."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests import models  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)


@pytest.fixture(scope="session")
def trained_functional(tmp_path_factory):
    """A compiled functional model trained for two Adam steps, and its export."""
    import export_core

    keras_seed()
    model = models.functional_regressor()
    x, y = models.regression_batch()
    for _ in range(models.STEPS):
        model.train_on_batch(x, y)
    base = tmp_path_factory.mktemp("functional")
    reference = str(base / "reference.keras")
    model.save(reference)  # an independent copy, with optimizer state, for comparisons
    path = export_core.export_saved_model(model, str(base / "export"))
    return model, path, reference, (x, y)


def keras_seed():
    import keras

    keras.utils.set_random_seed(99)


@pytest.fixture
def batch():
    return np.random.default_rng(0).standard_normal((6, 3)).astype("float32")


@pytest.fixture(scope="session")
def tripwire(tmp_path_factory):
    """Packages named tensorflow, keras and prefect that fail when imported: put first
    on PYTHONPATH, they show which commands import none of the real ones."""
    root = tmp_path_factory.mktemp("tripwire")
    for name in ("tensorflow", "keras", "prefect"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(
            f"raise ImportError('tripwire: {name} imported')\n"
        )
    return str(root)


@pytest.fixture(scope="session")
def torch_python() -> str:
    """A Python with this venv's packages plus PyTorch, made once and kept in the venv.

    PyTorch is there only to give Keras another backend (to start with, to train on);
    it is not a dependency. This kind of machine keeps a CPU wheel of it on disk. Test
    workers share the one environment: the first makes it under a lock.
    """
    import fcntl
    import glob
    import subprocess
    import sys
    import sysconfig

    side = os.path.join(sys.prefix, "side-torch")
    python = os.path.join(side, "bin", "python")
    with open(f"{side}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(side, ".ready")):
            subprocess.run([sys.executable, "-m", "venv", "--clear", side], check=True, timeout=300)
            purelib = sysconfig.get_paths()["purelib"]
            site_packages = subprocess.run(
                [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            with open(os.path.join(site_packages, "_parent_venv.pth"), "w") as handle:
                handle.write(f"import site; site.addsitedir({purelib!r})\n")
            wheels = sorted(glob.glob("/opt/wheels/torch-*cpu*.whl"))
            subprocess.run(
                [python, "-m", "pip", "install", "-q", wheels[-1] if wheels else "torch"],
                check=True,
                timeout=1800,
            )
            open(os.path.join(side, ".ready"), "w").close()
    return python


@pytest.fixture(scope="module")
def prefect_api():
    """Prefect's test API, one per test module that asks for it."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def s3_server():
    import logging

    from tests.servers import S3Server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def auth_s3():
    """moto in its own process, checking every request's signature as AWS does."""
    from tests.servers import AuthS3Server

    server = AuthS3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    from tests.servers import GCSServer

    server = GCSServer().start()
    yield server
    server.stop()


class Backend:
    """A base URI on one storage backend, with its options and filesystem."""

    def __init__(self, name: str, base: str, options: dict):
        import fsspec

        self.name, self.base, self.options = name, base, options
        fsspec.AbstractFileSystem.clear_instance_cache()
        self.fs, self.path = fsspec.core.url_to_fs(base, **options)

    def listing(self, path: str | None = None) -> list[str]:
        try:
            return sorted(
                p.rstrip("/").rsplit("/", 1)[-1]
                for p in self.fs.ls(path or self.path, detail=False)
            )
        except FileNotFoundError:
            return []


@pytest.fixture(params=["local", "memory", "s3", "gcs"])
def backend(request, tmp_path):
    """One contract, every backend: local disk, fsspec memory, S3 and GCS servers."""
    import uuid

    bucket = f"b{uuid.uuid4().hex[:12]}"
    if request.param == "local":
        return Backend("local", str(tmp_path / "registry"), {})
    if request.param == "memory":
        return Backend("memory", f"memory://{bucket}/registry", {})
    server = request.getfixturevalue(f"{request.param}_server")
    scheme = "s3" if request.param == "s3" else "gs"
    backend = Backend(request.param, f"{scheme}://{bucket}/registry", server.storage_options())
    backend.fs.mkdir(bucket)
    return backend
