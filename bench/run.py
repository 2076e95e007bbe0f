"""Side-by-side benchmark: the exporter vs model.export (+ upload), each case in a fresh process.

    ./dev.sh bench                 # all models, 3 runs each (tens of minutes on 2 cores)
    ./dev.sh bench --quick         # mlp and mobilenetv2, 1 run: a smoke run
    ./dev.sh bench --big           # also dense3g (about 10 GB of RAM, 20 GB of disk)

Prints a table of medians with product/baseline ratios and writes bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["mlp", "mobilenetv2", "resnet50", "dense100m", "dense1g"]
# dense3g (3 GB of float32 weights) runs only the cases that show it fits: all modes
# with verification, locally and to S3, beside the baselines (see --big).
BIG = "dense3g"
# No baseline B: moto's server assembles a multipart upload in memory and was seen to
# die on the 6 GB shard model.export writes for dense3g, which says nothing about the
# product. A case that fails is recorded with its error (see run_big_case).
BIG_CASES = ["baseline_a", "product_all_local", "product_serving_s3", "product_all_s3"]
CASES = [
    "baseline_a",
    "baseline_b",
    "product_serving_noverify_local",
    "product_serving_local",
    "product_serving_s3",
    "product_all_local",
    "product_all_s3",
    # The same export through the two other entry points: the Prefect flow on an API
    # that is already up, and `keras-export export` in a fresh process.
    "product_all_flow_warm",
    "product_all_cli_cold",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto server did not start")


def run_case(model: str, case: str, s3: str) -> dict:
    # Each case starts with the previous one's files on disk: the kernel throttles a
    # writer while another's dirty pages are still being written back, which would
    # charge one case for what the case before it wrote.
    os.sync()
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "case.py"),
            "--model",
            model,
            "--case",
            case,
            "--s3",
            s3,
        ],
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{model}/{case} failed:\n{done.stderr[-3000:]}")


REFERENCE = "keras_train_step"  # not an export: Keras's own train-step build time


def run_big_case(model: str, case: str, s3: str) -> dict:
    """``run_case``, recording a failure (e.g. the S3 server running out of memory)."""
    try:
        return run_case(model, case, s3)
    except RuntimeError as exc:
        return {"seconds": float("nan"), "error": str(exc)[-600:], "model": model, "case": case}


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key in (
        "seconds",
        "bytes",
        "peak_rss_above_start",
        "overhead_seconds",
        "direct_seconds",
        "put_seconds",
        "peak_rss_child",
    ):
        if key in out:
            out[key] = statistics.median(r[key] for r in runs)
    if "steps" in out:
        out["steps"] = {k: statistics.median(r["steps"][k] for r in runs) for k in out["steps"]}
    out["runs"] = len(runs)
    return out


def slope(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.mean(lx), statistics.mean(ly)
    den = sum((x - mx) ** 2 for x in lx)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / den if den else 0.0


def report(results: dict) -> str:
    mb = 1024 * 1024
    lines = [
        "| model | params | case | seconds | x baseline | MB written | x baseline | "
        "peak RSS above start (MB) | x weight bytes | (peak - baseline peak) / weight bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    failed = []
    for model, cases in results["models"].items():
        a, b = cases["baseline_a"], cases.get("baseline_b")
        cases = {k: v for k, v in cases.items() if k in CASES}
        for case, r in cases.items():
            if case == REFERENCE:
                continue
            if "error" in r:
                failed.append(f"- {model} {case}: {r['error'].strip().splitlines()[-1]}")
                continue
            base = b if case.endswith("_s3") or case == "baseline_b" else a
            # The CLI runs in a child process: its whole peak (imports included).
            peak = r.get("peak_rss_child", r["peak_rss_above_start"])
            if base is None:  # no baseline B (dense3g): the figures alone
                lines.append(
                    f"| {model} | {r['params']:,} | {case} | {r['seconds']:.2f} | n/a | "
                    f"{r['bytes'] / mb:.1f} | n/a | {peak / mb:.0f} | "
                    f"{peak / r['weight_bytes']:.2f} | n/a |"
                )
                continue
            lines.append(
                f"| {model} | {r['params']:,} | {case} | {r['seconds']:.2f} | "
                f"{r['seconds'] / base['seconds']:.2f} | {r['bytes'] / mb:.1f} | "
                f"{r['bytes'] / base['bytes']:.2f} | {peak / mb:.0f} | "
                f"{peak / r['weight_bytes']:.2f} | "
                f"{(peak - base['peak_rss_above_start']) / r['weight_bytes']:.2f} |"
            )
    lines += [
        "",
        "product_all_flow_warm: the Prefect flow on an API already up; product_all_cli_cold: "
        "`keras-export export` in a fresh process (imports, Prefect's temporary API, the flow), "
        "its peak RSS the child's whole.",
    ]
    if failed:
        lines += ["", "Cases that failed:", "", *failed]
    lines += ["", "Getting the bytes to S3, MB/s (see upload_rates):", ""]
    for model, cases in results["models"].items():
        lines.append(f"- {model}: " + "; ".join(upload_rates(cases)))
    for case in ("product_all_local", "product_serving_s3"):
        lines += ["", f"Steps of {case} (seconds):", ""]
        for model, cases in results["models"].items():
            steps = cases.get(case, {}).get("steps", {})
            lines.append(f"- {model}: " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    lines += ["", "Keras's own train step, first train_on_batch minus a warm one (seconds):", ""]
    for model, cases in results["models"].items():
        if REFERENCE in cases:
            r = cases[REFERENCE]
            lines.append(
                f"- {model}: {r['seconds']:.2f} (our trace:train "
                f"{cases['product_all_local']['steps'].get('trace:train', 0):.2f})"
            )
    models = [m for m in results["models"] if m != BIG]
    if len(models) > 1:
        params = [results["models"][m]["product_all_local"]["params"] for m in models]
        lines += ["", "Growth with parameter count (log-log slope; 1.0 = linear):", ""]
        for key in ("seconds", "bytes", "peak_rss_above_start"):
            for case in ("baseline_a", "product_serving_local", "product_all_local"):
                ys = [results["models"][m][case][key] for m in models]
                lines.append(f"- {case} {key}: {slope(params, ys):.2f}")
    if "flow" in results:
        f = results["flow"]
        lines += [
            "",
            f"Prefect flow overhead (warm, serving-only {f['model']}): "
            f"{f['overhead_seconds']:.2f} s per export "
            f"(flow {f['seconds']:.2f} s vs direct {f['direct_seconds']:.2f} s); "
            f"a flow of 8 no-op tasks takes {f.get('noop_flow_seconds', float('nan')):.2f} s",
        ]
    return "\n".join(lines)


def upload_rates(cases: dict) -> list[str]:
    """MB/s of getting the bytes to S3: baseline B's ``fs.put`` (timed in its own run) beside the
    product's (the S3 case's seconds minus the same case's local seconds). The product's
    upload overlaps verification, so its own step times would not say."""
    mb = 1024 * 1024
    a, b = cases["baseline_a"], cases.get("baseline_b")
    out = ["fs.put not measured"]
    if b is not None:
        put = b.get("put_seconds", b["seconds"] - a["seconds"])  # older results: B - A
        out = [f"fs.put {b['bytes'] / mb / put:.0f}" if put > 0.05 else "fs.put n/a"]
    for case in ("product_serving_s3", "product_all_s3"):
        local = cases.get(case.replace("_s3", "_local"))
        if case in cases and local and "error" not in cases[case]:
            extra = cases[case]["seconds"] - local["seconds"]
            rate = f"{cases[case]['bytes'] / mb / extra:.0f}" if extra > 0.05 else "n/a"
            out.append(f"{case} {rate} (+{extra:.2f} s over local)")
    return out


def save(results: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--big", action="store_true", help=f"also {BIG}, {', '.join(BIG_CASES)}")
    parser.add_argument("--report", metavar="JSON", help="only print the table of a saved run")
    parser.add_argument("--cases", nargs="*", help="only these cases (e.g. while optimising one)")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f)))
        return
    models = args.models or (MODELS[:2] if args.quick else MODELS)
    runs = args.runs or (1 if args.quick else 3)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", time.strftime("%Y%m%d-%H%M%S") + ".json")
    proc, s3 = start_s3()
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "runs": runs,
        "models": {},
    }
    try:
        for model in models + ([BIG] if args.big else []):
            # Runs interleave the cases, so drift in the machine's speed hits all alike.
            cases = BIG_CASES if model == BIG else [*CASES, REFERENCE]
            if model == "dense1g":  # all modes to S3: 3 GB through moto, over 3 minutes a run
                cases = [c for c in cases if c != "product_all_s3"]
            if args.cases:
                cases = [c for c in cases if c in args.cases]
            measured: dict[str, list[dict]] = {case: [] for case in cases}
            for run in range(1 if model == BIG else runs):
                for case in measured:
                    if model == BIG and case.endswith("_s3"):
                        # moto keeps the memory of what it stored, deleted or not: 2.8 GB
                        # of serving-only, then 8.7 GB of all modes, outgrow 24 GiB.
                        proc.terminate()
                        proc.wait()
                        proc, s3 = start_s3()
                    measured[case].append(
                        run_big_case(model, case, s3) if model == BIG else run_case(model, case, s3)
                    )
                    print(
                        f"{model:12} {case:32} run {run + 1}: "
                        f"{measured[case][-1]['seconds']:8.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            results["models"][model] = {case: median_of(m) for case, m in measured.items()}
            save(results, path)  # after every model: a crash late in a long run keeps the rest
        if not args.cases:
            results["flow"] = median_of([run_case(models[0], "flow_overhead", s3)])
    finally:
        proc.terminate()
    save(results, path)
    print(report(results))
    print(f"\nJSON: {path}")


if __name__ == "__main__":
    main()
