"""The arguments of ``keras-export``: every command, its options and their help."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from keras_export.cli import registry_commands
from keras_export.cli.output import EXIT_CODES, EXIT_USAGE


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

    add_export_command(command)
    add_version_commands(command)
    registry_commands.add_commands(command)
    return parser


def add_export_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``keras-export export MODEL DEST [options]``."""
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
        "--signing-key",
        metavar="PEM|secret/NAME",
        help="sign the version with this Ed25519 private key (a PEM file, or a Prefect "
        "Secret block holding one)",
    )
    export.add_argument(
        "--no-timestamp",
        action="store_true",
        help="write into DEST itself (must be missing or empty)",
    )


def add_version_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``inspect``, ``verify``, ``versions``, ``diff`` and ``gc``: one version or a base."""
    inspect = command("inspect", help="show MetaGraphs, signatures, files, manifest")
    inspect.add_argument("path")

    verify = command("verify", help="re-check hashes and reload with TF's loaders")
    verify.add_argument("path")
    verify.add_argument("--model", help="a .keras model to compare predictions with")
    verify.add_argument("--full", action="store_true", help=FULL_HELP)
    verify.add_argument(
        "--public-key",
        metavar="PEM",
        help="require the version to be signed by this Ed25519 public key's private key",
    )

    versions = command("versions", help="list versions, newest last")
    versions.add_argument("base")
    versions.add_argument(
        "--field", metavar="NAME", help="show this metadata field per version (e.g. auc)"
    )
    versions.add_argument(
        "--where",
        action="append",
        metavar="EXPR",
        help="only versions whose recorded metadata meets EXPR, e.g. 'metadata.auc>=0.9' "
        "(ops >=, <=, >, <, ==, !=; repeat: all must hold)",
    )
    versions.add_argument(
        "--keep", type=int, metavar="N", help="show what 'gc --keep N' would keep, and why"
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
