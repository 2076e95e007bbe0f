"""``keras-export``: the command line, in the manner of saved_model_cli, gsutil and prefect.

    keras-export export MODEL DEST [options]         run the export flow
    keras-export inspect PATH                        MetaGraphs, signatures, files, manifest
    keras-export verify PATH [--model M] [--full]    re-check hashes, loaders, parity
    keras-export versions BASE                       versions, newest last, with status
    keras-export gc BASE --keep N                    prune old versions and stale staging

Exit codes: 0 success, 2 usage error (bad arguments or options), 3 export or storage
failure, 4 verification failure, 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_EXPORT, EXIT_VERIFY = 0, 1, 2, 3, 4


class UsageError(Exception):
    """A command-line argument that cannot be used."""


class Progress:
    """A progress bar on a terminal; silent when stderr is not a TTY."""

    def __init__(self, label: str, stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "." * (width - filled)
        mb = 1024 * 1024
        self.stream.write(f"\r{self.label} [{bar}] {done / mb:7.1f}/{total / mb:.1f} MB")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.shown = False


def _json_arg(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name} is not valid JSON ({exc.msg}): {text!r}") from exc


def package_version() -> str:
    """The installed distribution's version (a checkout without install: unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-savedmodel-export")
    except PackageNotFoundError:
        return "unknown (not installed)"


FULL_HELP = "load train and eval MetaGraphs with tf.saved_model.load too (slower)"


def add_global_options(parser: argparse.ArgumentParser, after_command: bool = False) -> None:
    """The options every command takes; after the command they only override."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if after_command else value

    parser.add_argument(
        "--json", action="store_true", default=default(False), help="print machine-readable JSON"
    )
    parser.add_argument(
        "--storage-options",
        metavar="JSON",
        default=default(None),
        help='fsspec options, e.g. \'{"endpoint_url": "..."}\'',
    )
    parser.add_argument(
        "--credentials",
        metavar="SLUG/NAME",
        default=default(None),
        help="a saved Prefect block for the destination, e.g. aws-credentials/registry-writer",
    )
    parser.add_argument(
        "--source-credentials",
        metavar="SLUG/NAME",
        default=default(None),
        help="a saved Prefect block for the model source (default: --credentials)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-export",
        description="Export Keras models as verified, versioned TensorFlow SavedModels.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        # Global options are accepted after the command too (gsutil/aws style).
        sub_parser = sub.add_parser(name, **kwargs)
        add_global_options(sub_parser, after_command=True)
        return sub_parser

    export = command("export", help="export a .keras model (runs the Prefect flow)")
    export.add_argument("model", help="path or URI of a .keras file")
    export.add_argument("dest", help="base path or URI; a version folder is created under it")
    export.add_argument("--serving-only", action="store_true")
    export.add_argument(
        "--modes", help="comma-separated MetaGraphs to write, e.g. serve,eval (default: all)"
    )
    export.add_argument("--as-text", action="store_true", help="write saved_model.pbtxt")
    export.add_argument(
        "--input-signature",
        metavar="JSON",
        help='[{"shape": [null, 3], "dtype": "float32", "name": "x"}]',
    )
    export.add_argument("--custom-object", action="append", default=None, metavar="PKG.MOD:NAME")
    export.add_argument("--keep-versions", type=int, metavar="N")
    export.add_argument("--sample-inputs", metavar="NPZ", help="golden inputs for verification")
    export.add_argument("--full-verify", action="store_true", help=FULL_HELP)
    export.add_argument(
        "--no-timestamp",
        action="store_true",
        help="write into DEST itself (must be missing or empty)",
    )

    inspect = command("inspect", help="show MetaGraphs, signatures, files, manifest")
    inspect.add_argument("path")

    verify = command("verify", help="re-check hashes and reload with TF's loaders")
    verify.add_argument("path")
    verify.add_argument("--model", help="a .keras model to compare predictions with")
    verify.add_argument("--full", action="store_true", help=FULL_HELP)

    versions = command("versions", help="list versions, newest last")
    versions.add_argument("base")

    gc = command("gc", help="remove old complete versions and stale staging")
    gc.add_argument("base")
    gc.add_argument("--keep", type=int, required=True, metavar="N")
    gc.add_argument(
        "--no-sweep",
        action="store_true",
        help="leave .staging-* folders alone (e.g. while exports run)",
    )
    return parser


def run_export_command(args, options) -> dict:
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from export_core import storage
    from keras_export.flows.export import export_keras_model

    bar = Progress("upload")
    with storage.progress_listener(bar):
        try:
            return export_keras_model(
                model=args.model,
                destination=args.dest,
                serving_only=args.serving_only,
                modes=args.modes.split(",") if args.modes else None,
                as_text=args.as_text,
                input_signature=_json_arg(args.input_signature, "--input-signature"),
                custom_objects=args.custom_object,
                storage_options=options,
                credentials=args.credentials,
                source_credentials=args.source_credentials,
                keep_versions=args.keep_versions,
                sample_inputs=args.sample_inputs,
                timestamped=not args.no_timestamp,
                full_verify=args.full_verify,
            )
        finally:
            bar.close()


def run_command(args) -> dict | list:
    options = _json_arg(args.storage_options, "--storage-options") or None
    if args.command == "export":
        return run_export_command(args, options)
    from export_core import registry, sources, storage

    source_options = options
    if args.credentials or args.source_credentials:
        from keras_export.tasks.credentials import storage_access

        source_options = storage_access(
            args.source_credentials or args.credentials, options
        ).storage_options()
        options = storage_access(args.credentials, options).storage_options()

    if args.command == "inspect":
        bar = Progress("download")
        try:
            return registry.inspect_saved_model(args.path, options, bar)
        finally:
            bar.close()
    if args.command == "verify":
        model = sources.load_keras_source(args.model, None, source_options) if args.model else None
        bar = Progress("download")
        try:
            return registry.verify_saved_model(
                args.path, model=model, storage_options=options, progress=bar, full=args.full
            )
        finally:
            bar.close()
    if args.command == "versions":
        return [v.to_dict() for v in registry.list_versions(args.base, options)]
    if args.command == "gc":
        dest = storage.Destination.parse(args.base, options)
        dest.check_reachable()
        pruned = storage.prune_versions(dest, args.keep)
        swept = [] if args.no_sweep else storage.sweep_staging(dest)
        return {"base": args.base, "pruned": pruned, "swept": swept}
    raise UsageError(f"unknown command {args.command}")


def render(command: str, result: Any) -> str:
    """Human-readable output for each command."""
    if command in ("inspect", "export"):
        return _render_inspect(result)
    if command == "verify":
        p = result["parity"]
        checked = "match the manifest" if result["manifest_checked"] else "unchecked (no manifest)"
        return (
            f"OK {result['path']}: modes {', '.join(result['modes'])}; files {checked}"
            f"; loaders {', '.join(p['loaders'])}; max |diff| {p['max_abs_diff']:.3g} "
            f"vs {result['compared_with']}"
        )
    if command == "versions":
        if not result:
            return "no versions"
        rows = []
        for v in result:
            status = "complete" if v["complete"] else "INCOMPLETE"
            status += ", verified" if v["verified"] else ", UNVERIFIED"
            rows.append(f"{v['version']}  {status}  {v['created'] or '-'}  {v['path']}")
        return "\n".join(rows)
    if command == "gc":
        return f"pruned versions {result['pruned'] or 'none'}; swept {result['swept'] or 'nothing'}"
    return json.dumps(result, indent=2)


def _render_inspect(result: dict) -> str:
    lines = [f"SavedModel {result['path']}"]
    if "version" in result:
        lines[0] += f" (version {result['version']})"
    for meta_graph in result.get("meta_graphs") or _graphs_from_flow(result):
        lines.append(f"MetaGraph tags {meta_graph['tags']}")
        for key, sig in meta_graph["signatures"].items():
            lines.append(f"  signature '{key}' ({sig.get('method_name', '')})")
            for kind in ("inputs", "outputs"):
                for t in sig[kind]:
                    lines.append(f"    {kind[:-1]:6} {t['name']}: {t['dtype']} {t['shape']}")
    files = result.get("files") or {}
    for name, info in files.items():
        size = info["size"] if isinstance(info, dict) else info
        lines.append(f"  file {name} ({size} bytes)")
    manifest = result.get("manifest")
    if manifest:
        lines.append(f"manifest: created {manifest['created']}, parity {manifest['parity']}")
    if "parity" in result and result["parity"]:
        lines.append(f"parity: max |diff| {result['parity']['max_abs_diff']:.3g}")
    return "\n".join(lines)


def _graphs_from_flow(result: dict) -> list[dict]:
    signatures = result.get("signatures", {})
    return [
        {
            "tags": tags,
            "signatures": {k: v for k, v in signatures.items() if _key_tag(k) == tags[0]},
        }
        for tags in result.get("tags", [])
    ]


def _key_tag(key: str) -> str:
    return {"serving_default": "serve"}.get(key, key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    from export_core.errors import (
        ExportError,
        ExportValidationError,
        UnsupportedModelError,
        VerificationError,
    )

    try:
        result = run_command(args)
    except UsageError as exc:
        print(f"keras-export: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VerificationError as exc:
        print(f"keras-export: verification failed: {exc}", file=sys.stderr)
        return EXIT_VERIFY
    except (ExportValidationError, UnsupportedModelError) as exc:
        print(f"keras-export: invalid input: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ExportError as exc:
        print(f"keras-export: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_EXPORT
    print(json.dumps(result, indent=2, default=str) if args.json else render(args.command, result))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
