"""``keras-export``: the command line, in the manner of saved_model_cli, gsutil and prefect.

    keras-export export MODEL DEST [options]         run the export flow
    keras-export inspect PATH                        MetaGraphs, signatures, files, manifest
    keras-export verify PATH [--model M] [--full]    re-check hashes, loaders, parity
    keras-export versions BASE                       versions, newest last, with status
    keras-export gc BASE --keep N                    prune old versions and stale staging

Every error is one line on stderr, ``keras-export: <kind>: <what was wrong>. <how to
fix>`` (a JSON object on stdout with ``--json``), with no traceback (``--debug``) and no
TensorFlow or Prefect noise (``--verbose``). Arguments are checked before TensorFlow
or Prefect start. Exit codes, the same for every command: 0 ok, 2 invalid input, 3
export or storage failed, 4 verification failed, 130 interrupted (Ctrl-C), 143
terminated (SIGTERM, which stops a command as Ctrl-C does), 1 unexpected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from keras_export.flows import cli_output as out
from keras_export.flows import cli_registry
from keras_export.flows.cli_output import EXIT_CODES, EXIT_OK, EXIT_USAGE, Progress


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as the one line every other error is."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = f" {self.prog.split()[-1]}" if " " in self.prog else ""
        text = f"{message}. Run 'keras-export{command} --help'"
        if "--json" in sys.argv:
            error = {"kind": "invalid input", "message": text, "exit_code": EXIT_USAGE}
            print(json.dumps({"error": error}))
        else:
            print(f"keras-export: invalid input: {text}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def package_version() -> str:
    """The installed distribution's version (a checkout without install: unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-savedmodel-export")
    except PackageNotFoundError:
        return "unknown (not installed)"


FULL_HELP = "load train and eval MetaGraphs with tf.saved_model.load too (slower)"


GLOBAL_OPTIONS = (
    ("--json", {"action": "store_true", "default": False, "help": "print machine-readable JSON"}),
    ("--verbose", {"action": "store_true", "default": False,
                   "help": "show TensorFlow's and Prefect's own output"}),
    ("--debug", {"action": "store_true", "default": False, "help": "--verbose, and tracebacks"}),
    ("--storage-options", {"metavar": "JSON", "default": None,
                           "help": 'fsspec options, e.g. \'{"endpoint_url": "..."}\''}),
    ("--credentials", {"metavar": "SLUG/NAME", "default": None, "help": "a saved Prefect block "
                       "for the destination, e.g. aws-credentials/registry-writer"}),
    ("--source-credentials", {"metavar": "SLUG/NAME", "default": None, "help": "a saved "
                              "Prefect block for the model source (default: --credentials)"}),
)  # fmt: skip


def add_global_options(parser: argparse.ArgumentParser, after_command: bool = False) -> None:
    """The options every command takes; after the command they only override."""
    for flag, options in GLOBAL_OPTIONS:
        default = argparse.SUPPRESS if after_command else options["default"]
        parser.add_argument(flag, **{**options, "default": default})


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="keras-export",
        description="Export Keras models as verified, versioned TensorFlow SavedModels.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        # Global options are accepted after the command too (gsutil/aws style).
        sub_parser = sub.add_parser(name, epilog=EXIT_CODES, **kwargs)
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
    export.add_argument(
        "--cast-inputs",
        action="store_true",
        help="accept --input-signature dtypes that differ from the model's; cast them",
    )
    export.add_argument("--custom-object", action="append", default=None, metavar="PKG.MOD:NAME")
    export.add_argument("--keep-versions", type=int, metavar="N")
    export.add_argument("--sample-inputs", metavar="NPZ", help="golden inputs for verification")
    export.add_argument("--full-verify", action="store_true", help=FULL_HELP)
    export.add_argument("--metadata", metavar="JSON", help="a JSON object kept in the lineage")
    export.add_argument(
        "--compare-label", metavar="LABEL", help="stay compatible with this label's version"
    )
    export.add_argument(
        "--allow-breaking-signature",
        action="store_true",
        help="publish even if the serving signatures break the compared version's clients",
    )
    export.add_argument("--warmup", action="store_true", help="write TF Serving warm-up requests")
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
    versions.add_argument(
        "--field", metavar="NAME", help="show this metadata field per version (e.g. auc)"
    )

    diff = command("diff", help="compare two versions' serving signatures (exit 4 if breaking)")
    diff.add_argument("old", help="the version clients use now (path or URI)")
    diff.add_argument("new", help="the version that would replace it")

    gc = command("gc", help="remove old complete versions and stale staging")
    gc.add_argument("base")
    gc.add_argument("--keep", type=int, required=True, metavar="N")
    gc.add_argument(
        "--no-sweep", action="store_true", help="leave staging folders and claims alone"
    )
    gc.add_argument(
        "--older-than",
        type=float,
        metavar="SECONDS",
        help="sweep staging folders and claims older than this (by the time in their name; "
        "default 6 h, well above a slow export; 0 once an export is known dead)",
    )
    cli_registry.add_commands(command)
    return parser


def preflight(args) -> dict | None:
    """Every check that needs neither TensorFlow nor Prefect; returns the storage options."""
    from export_core import preflight as pf
    from export_core.errors import ExportValidationError

    options = pf.check_storage_options(
        pf.parse_json(args.storage_options, "--storage-options"), "--storage-options"
    )
    if args.command == "export":
        pf.check_model_file(args.model)
        pf.check_destination(args.dest, timestamped=not args.no_timestamp)
        pf.check_modes(args.modes, args.serving_only)
        pf.check_custom_object_paths(args.custom_object)
        pf.check_signature_json(pf.parse_json(args.input_signature, "--input-signature"))
        pf.check_keep(args.keep_versions, "--keep-versions")
        metadata = pf.parse_json(args.metadata, "--metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ExportValidationError("--metadata must be a JSON object, e.g. '{\"auc\": 0.9}'.")
        pf.check_sample_inputs_file(args.sample_inputs)
        if args.credentials or args.source_credentials:
            from keras_export.tasks.credentials import check_blocks_exist

            check_blocks_exist(args.credentials, args.source_credentials)
        if not args.credentials and pf.scheme_of(args.dest) != "file":
            # A store that does not answer fails here, in seconds, not after
            # TensorFlow and Prefect have started (a block needs Prefect: later).
            from export_core import storage

            storage.Destination.parse(args.dest, options).check_reachable()
        if args.compare_label and not args.credentials:
            from export_core.signature_gate import require_label

            require_label(args.dest, args.compare_label, options)
    elif args.command == "gc":
        pf.check_keep(args.keep, "--keep")
    elif args.command == "verify" and args.model:
        pf.check_model_file(args.model)
    for path in (getattr(args, "path", None), getattr(args, "base", None)):
        if path is not None:
            pf.check_scheme(path, "Path")
    return options


def run_command(args, stream) -> Any:
    options = preflight(args)
    if args.command == "export":
        from keras_export.flows.cli_export import run_export_command

        return run_export_command(args, options, stream)
    from export_core import registry, storage

    source_options = options
    if args.credentials or args.source_credentials:
        from keras_export.tasks.credentials import storage_access

        source = args.source_credentials or args.credentials
        source_options = storage_access(source, options).storage_options()
        options = storage_access(args.credentials, options).storage_options()
    if args.command in cli_registry.COMMANDS:
        return cli_registry.run(args, options)
    bar = Progress("download", stream)
    try:
        if args.command == "inspect":
            return registry.inspect_saved_model(args.path, options, bar)
        if args.command == "verify":
            model = None
            if args.model:
                from export_core import sources

                model = sources.load_keras_source(args.model, None, source_options)
            return registry.verify_saved_model(
                args.path, model=model, storage_options=options, progress=bar, full=args.full
            )
    finally:
        bar.close()
    if args.command == "versions":
        return [v.to_dict() for v in registry.list_versions(args.base, options)]
    if args.command == "diff":
        return registry.diff_versions(args.old, args.new, options)
    dest = storage.Destination.parse(args.base, options)
    dest.check_reachable()
    registry.require_base(dest, args.base)
    age = {} if args.older_than is None else {"older_than": args.older_than}
    pruned = storage.prune_versions(dest, args.keep)
    swept = [] if args.no_sweep else storage.sweep_staging(dest, **age)
    return {"base": args.base, "pruned": pruned, "swept": swept}


def main(argv: Sequence[str] | None = None, quiet_until_exit: bool = False) -> int:
    """Runs one command; returns its exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version: 0; bad arguments: 2, already printed
        return int(exc.code or 0)
    quiet = out.QuietProcess(enabled=not (args.verbose or args.debug))
    out.raise_on_sigterm()
    try:
        with quiet:
            try:
                result = run_command(args, quiet.stream)
            except BaseException as exc:  # and Prefect's TerminationSignal (a BaseException)
                if isinstance(exc, SystemExit | GeneratorExit):
                    raise
                if args.debug:
                    import traceback

                    traceback.print_exception(exc, file=quiet.stream)
                return out.report_error(exc, args.command, args.json, quiet.stream)
        text = (
            json.dumps(result, indent=2, default=str)
            if args.json
            else (
                cli_registry.render(args.command, result)
                or out.render(args.command, result, getattr(args, "field", None))
            )
        )
        print(text, flush=True)
        if not args.json:  # with --json they are in the object, as "warnings"
            out.print_warnings(result, quiet.stream)
        return EXIT_OK
    finally:
        if not quiet_until_exit:
            quiet.restore()


def entry() -> None:
    """The ``keras-export`` console script: stays quiet through interpreter exit too
    (Prefect stops its temporary server, and says so, from an exit handler)."""
    sys.exit(main(quiet_until_exit=True))


if __name__ == "__main__":
    entry()
