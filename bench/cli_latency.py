# ruff: noqa: E501 - one case per line
"""How fast ``keras-export`` answers: time to the one-line error, and the light commands.

    .venv/bin/python bench/cli_latency.py [--runs 3]

Each case is a fresh process of the installed ``keras-export``; the table shows the
median wall time (seconds) and the exit code. Next to it, ``python -c "import
tensorflow"`` is the floor any command that needs TensorFlow pays. The cases that
reach a model (signature rank, sample shapes, NaN weights) load it, so they pay
TensorFlow and Prefect's embedded API; everything else fails before either starts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CLI = os.path.join(os.path.dirname(sys.executable), "keras-export")


def make_inputs(root: str) -> dict[str, str]:
    """The files the cases need, made once (a tiny real model among them)."""
    code = (
        "import keras, sys\n"
        "i = keras.Input((3,), name='features')\n"
        "m = keras.Model(i, keras.layers.Dense(2)(i)); m.compile('adam', 'mse')\n"
        "m.save(sys.argv[1])\n"
    )
    model = os.path.join(root, "model.keras")
    subprocess.run([sys.executable, "-c", code, model], check=True, capture_output=True)
    text = os.path.join(root, "text.keras")
    with open(text, "w") as handle:
        handle.write("not a model\n")
    os.makedirs(os.path.join(root, "empty"))
    export = os.path.join(root, "exported")
    subprocess.run(
        [CLI, "export", model, export, "--no-timestamp"], check=True, capture_output=True
    )
    return {"model": model, "text": text, "empty": os.path.join(root, "empty"), "export": export}


def cases(root: str, files: dict[str, str]) -> dict[str, list[str]]:
    registry = os.path.join(root, "registry")
    return {
        "--help": ["--help"],
        "--version": ["--version"],
        "versions (missing base)": ["versions", registry],
        "gc --keep 0": ["gc", registry, "--keep", "0"],
        "export: model missing": ["export", os.path.join(root, "nope.keras"), registry],
        "export: text file named .keras": ["export", files["text"], registry],
        "export: unknown scheme": ["export", files["model"], "foo://b/x"],
        "export: bad --storage-options": ["export", files["model"], registry, "--storage-options", "{"],
        "export: bad dtype in --input-signature": [
            "export", files["model"], registry, "--input-signature", '[{"shape": [null, 3], "dtype": "x"}]'
        ],
        "export: --keep-versions -1": ["export", files["model"], registry, "--keep-versions", "-1"],
        "inspect: empty folder": ["inspect", files["empty"]],
        "export: signature of the wrong rank (loads the model)": [
            "export", files["model"], registry, "--input-signature", '[{"shape": [null, 3, 1]}]'
        ],
        "export: a tiny model, all modes, verified (Prefect's temporary API, cold)": [
            "export", files["model"], os.path.join(root, "published"),
        ],
        "inspect: a real export (TensorFlow imported)": ["inspect", files["export"]],
        "export: unreachable S3 endpoint": [
            "export", files["model"], "s3://b/m", "--storage-options",
            '{"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s"}',
        ],
    }  # fmt: skip


def time_command(command: list[str], runs: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True)
        times.append(time.perf_counter() - start)
        code = done.returncode
    return statistics.median(times), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-latency-") as root:
        os.environ["PREFECT_HOME"] = os.path.join(root, "prefect-home")
        files = make_inputs(root)
        floor, _ = time_command([sys.executable, "-c", "import tensorflow"], args.runs)
        print(
            f"| case | median s | exit |\n|---|---|---|\n| python -c 'import tensorflow' | {floor:.2f} | |"
        )
        for name, argv in cases(root, files).items():
            seconds, code = time_command([CLI, *argv], args.runs)
            print(f"| {name} | {seconds:.2f} | {code} |", flush=True)


if __name__ == "__main__":
    main()
