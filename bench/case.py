"""One benchmark case in a fresh process; prints one JSON line.

python bench/case.py --model resnet50 --case product_all_local --s3 http://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Samples resident memory every 5 ms while a case runs."""

    def __enter__(self):
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def build(name: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    if name == "mlp":
        inputs = keras.Input((64,), name="features")
        x = keras.layers.Dense(256, activation="relu")(inputs)
        x = keras.layers.Dense(256, activation="relu")(x)
        model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    elif name == "mobilenetv2":
        model = keras.applications.MobileNetV2(weights=None)
    elif name == "resnet50":
        model = keras.applications.ResNet50(weights=None)
    elif name == "dense100m":
        inputs = keras.Input((10_000,), name="features")
        model = keras.Model(inputs, keras.layers.Dense(10_000, name="out")(inputs))
    elif name == "dense1g":  # about 256M parameters, 1 GB of float32
        inputs = keras.Input((16_000,), name="features")
        model = keras.Model(inputs, keras.layers.Dense(16_000, name="out")(inputs))
    elif name == "dense3g":  # about 729M parameters, 3 GB of float32
        inputs = keras.Input((27_000,), name="features")
        model = keras.Model(inputs, keras.layers.Dense(27_000, name="out")(inputs))
    else:
        raise SystemExit(f"unknown model {name}")
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    # Adam's two slots per weight exist, as in a model that was trained (or loaded
    # with its optimizer): the export is measured on what users export.
    model.optimizer.build(model.trainable_variables)
    return model


def tree_bytes(fs, path: str) -> int:
    return sum(int(i.get("size") or 0) for i in fs.find(path, detail=True).values())


def s3fs_for(url: str):
    import fsspec

    options = {"key": "bench", "secret": "bench", "endpoint_url": url}
    fs, _ = fsspec.core.url_to_fs("s3://bench", **options)
    if not fs.exists("bench"):
        fs.mkdir("bench")
    return fs, options


def run_case(case: str, model: keras.Model, work: str, s3_url: str | None) -> dict:
    import export_core

    local = os.path.join(work, "out")
    out: dict = {}
    if case in ("baseline_a", "baseline_b"):
        t = time.perf_counter()
        model.export(local, format="tf_saved_model", verbose=False)
        out["seconds"] = time.perf_counter() - t
        out["bytes"] = sum(
            os.path.getsize(os.path.join(r, f)) for r, _, fs_ in os.walk(local) for f in fs_
        )
        if case == "baseline_b":
            fs, _ = s3fs_for(s3_url)
            files = [os.path.join(r, f) for r, _, names in os.walk(local) for f in names]
            prefix = f"bench/baseline/{os.getpid()}"
            put = time.perf_counter()
            fs.put(files, [f"{prefix}/{os.path.relpath(f, local)}" for f in files])
            out["seconds"] = time.perf_counter() - t
            out["put_seconds"] = time.perf_counter() - put
            fs.rm(prefix, recursive=True)  # the S3 server keeps objects on its disk
        return out
    if case == "keras_train_step":
        return keras_train_step(model)
    if case == "product_all_flow_warm":
        return flow_export(model, work)
    if case == "product_all_cli_cold":
        return cli_export(model, work)
    serving_only = "serving" in case
    verify = "noverify" not in case
    if case.startswith("flow_") or case.startswith("direct_"):
        return flow_overhead(case, model, work)
    options = None
    base = local
    if case.endswith("_s3"):
        fs, options = s3fs_for(s3_url)
        base = f"s3://bench/product/{os.getpid()}"
    t = time.perf_counter()
    result = export_core.run_export(
        model, base, serving_only=serving_only, verify=verify, storage_options=options
    )
    out["seconds"] = time.perf_counter() - t
    out["steps"] = dict(result.seconds)
    if case.endswith("_s3"):
        out["bytes"] = tree_bytes(fs, result.path.removeprefix("s3://"))
        fs.rm(base.removeprefix("s3://"), recursive=True)  # the server keeps objects on disk
    else:
        out["bytes"] = sum(
            os.path.getsize(os.path.join(r, f)) for r, _, fs_ in os.walk(result.path) for f in fs_
        )
    return out


def flow_export(model: keras.Model, work: str) -> dict:
    """The Prefect flow, all modes, on an API that is already up (a warm worker)."""
    from keras_export.flows import export_keras_model

    export_keras_model(model=model, destination=os.path.join(work, "warm"), serving_only=True)
    t = time.perf_counter()
    result = export_keras_model(model=model, destination=os.path.join(work, "out"))
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "steps": result["seconds"], "bytes": _tree_size(result["path"])}


def cli_export(model: keras.Model, work: str) -> dict:
    """``keras-export export`` in a fresh process, all modes: imports, Prefect's temporary
    API server and the flow, as a user's first command runs it. Its memory is the child
    process's own peak (``peak_rss_child``)."""
    import resource
    import subprocess

    source = os.path.join(work, "model.keras")
    model.save(source)
    cli = os.path.join(os.path.dirname(sys.executable), "keras-export")
    env = {**os.environ, "PREFECT_HOME": os.path.join(work, "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    t = time.perf_counter()
    run = subprocess.run(
        [cli, "export", source, os.path.join(work, "out"), "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - t
    if run.returncode != 0:
        raise SystemExit(f"keras-export failed: {run.stderr[-2000:]}")
    result = json.loads(run.stdout)
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "seconds": seconds,
        "steps": result["seconds"],
        "bytes": _tree_size(result["path"]),
        "peak_rss_child": child_peak,
    }


def _tree_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)


def keras_train_step(model: keras.Model) -> dict:
    """Reference: what Keras itself spends building its train step (first call - warm call)."""
    shape = [2, *model.inputs[0].shape[1:]]
    x = np.zeros(shape, "float32")
    y = np.zeros([2, *model.outputs[0].shape[1:]], "float32")
    t = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - t
    t = time.perf_counter()
    model.train_on_batch(x, y)
    warm = time.perf_counter() - t
    return {"seconds": first - warm, "first_call": first, "warm_call": warm, "bytes": 0}


def flow_overhead(case: str, model: keras.Model, work: str) -> dict:
    """Warm Prefect's embedded API, then time the flow and the direct call alike."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    import export_core
    from keras_export.flows import export_keras_model

    @task(cache_policy=NO_CACHE)
    def noop(i: int) -> int:
        return i

    @flow
    def eight_noop_tasks() -> None:  # Prefect's own floor: a flow run with as many tasks
        for i in range(8):
            noop(i)

    export_keras_model(model=model, destination=os.path.join(work, "warm"), serving_only=True)
    eight_noop_tasks()
    flow_s, direct_s, floor_s = [], [], []
    for i in range(3):
        t = time.perf_counter()
        eight_noop_tasks()
        floor_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        export_keras_model(model=model, destination=os.path.join(work, f"f{i}"), serving_only=True)
        flow_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        export_core.run_export(model, os.path.join(work, f"d{i}"), serving_only=True)
        direct_s.append(time.perf_counter() - t)
    return {
        "seconds": float(np.median(flow_s)),
        "direct_seconds": float(np.median(direct_s)),
        "overhead_seconds": float(np.median(flow_s) - np.median(direct_s)),
        "noop_flow_seconds": float(np.median(floor_s)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--case", required=True)
    parser.add_argument("--s3")
    args = parser.parse_args()
    model = build(args.model)
    model.predict(np.zeros([1, *model.inputs[0].shape[1:]], "float32"), verbose=0)
    work = tempfile.mkdtemp(prefix="bench-")
    try:
        with PeakRss() as memory:
            out = run_case(args.case, model, work, args.s3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out.update(
        model=args.model,
        case=args.case,
        params=int(model.count_params()),
        weight_bytes=int(sum(np.prod(w.shape) * 4 for w in model.weights)),
        peak_rss_above_start=memory.peak - memory.start,
    )
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
