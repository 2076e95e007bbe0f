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

import json
import sys
from collections.abc import Sequence
from typing import Any

from keras_export.cli import output as out
from keras_export.cli import registry_commands
from keras_export.cli.output import EXIT_OK, Progress
from keras_export.cli.parser import build_parser


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
            from keras_export.blocks import check_blocks_exist

            check_blocks_exist(args.credentials, args.source_credentials)
        if args.signing_key:
            from keras_export.signing_key import check_signing_key

            check_signing_key(args.signing_key)  # a key file: loaded now; a block: exists
        if not args.credentials and pf.scheme_of(args.dest) != "file":
            # A store that does not answer fails here, in seconds, not after
            # TensorFlow and Prefect have started (a block needs Prefect: later).
            from export_core import storage

            storage.Destination.parse(args.dest, options).check_reachable()
        if args.compare_label and not args.credentials:
            from export_core.registry.signature_gate import require_label

            require_label(args.dest, args.compare_label, options)
    elif args.command == "gc":
        pf.check_keep(args.keep, "--keep")
    elif args.command == "versions":
        from export_core.registry.where import parse_conditions

        pf.check_keep(args.keep, "--keep")
        parse_conditions(args.where)
    elif args.command == "verify" and args.model:
        pf.check_model_file(args.model)
    if registry_commands.required_public_key(args):
        from export_core.artifacts.signing import load_public_key

        load_public_key(args.public_key)
    for path in (getattr(args, "path", None), getattr(args, "base", None)):
        if path is not None:
            pf.check_scheme(path, "Path")
    return options


def run_command(args, stream) -> Any:
    options = preflight(args)
    if args.command == "export":
        from keras_export.cli.export_command import run_export_command

        return run_export_command(args, options, stream)
    from export_core import reverify, storage
    from export_core.registry import versions

    source_options = options
    if args.credentials or args.source_credentials:
        from keras_export.credentials import storage_access

        source = args.source_credentials or args.credentials
        source_options = storage_access(source, options).storage_options()
        options = storage_access(args.credentials, options).storage_options()
    if args.command in registry_commands.COMMANDS:
        return registry_commands.run(args, options)
    bar = Progress("download", stream)
    try:
        if args.command == "inspect":
            return versions.inspect_saved_model(args.path, options, bar)
        if args.command == "verify":
            model = None
            if args.model:
                from export_core.model import source_file

                model = source_file.load_keras_source(args.model, None, source_options)
            return reverify.verify_saved_model(
                args.path,
                model=model,
                storage_options=options,
                progress=bar,
                full=args.full,
                public_key=args.public_key,
            )
    finally:
        bar.close()
    if args.command == "versions":
        listed = versions.list_versions(args.base, options, keep=args.keep, where=args.where)
        return [v.to_dict() for v in listed]
    if args.command == "diff":
        return versions.diff_versions(args.old, args.new, options)
    dest = storage.Destination.parse(args.base, options)
    dest.check_reachable()
    versions.require_base(dest, args.base)
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
                registry_commands.render(args.command, result)
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
