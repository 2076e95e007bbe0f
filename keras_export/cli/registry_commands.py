"""``keras-export`` commands for using a bucket as a model registry: labels, TF Serving.

    keras-export label BASE LABEL VERSION          point LABEL (e.g. stable) at VERSION
    keras-export promote BASE VERSION --label L    move L to VERSION, recorded as a promotion
                 [--require-signed --public-key PEM]  only a version signed by that key
    keras-export rollback BASE --label L           move L back to its previous version
    keras-export labels BASE                       the labels and their history
    keras-export serving-config BASE [BASE ...]    a TF Serving --model_config_file

Nothing here imports Prefect or TensorFlow: these commands need only fsspec.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

COMMANDS = ("label", "promote", "rollback", "labels", "serving-config")
HISTORY_SHOWN = 10  # events `labels` prints as text (--json gives all)


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds the registry commands through ``command(name, **kwargs) -> subparser``."""
    label = command("label", help="point a label (e.g. stable) at a complete version")
    label.add_argument("base")
    label.add_argument("label")
    label.add_argument("version", type=int)

    promote = command("promote", help="move a label to a version, keeping its history")
    promote.add_argument("base")
    promote.add_argument("version", type=int)
    promote.add_argument("--label", required=True, metavar="LABEL")
    add_signed_options(promote, "the version")

    rollback = command("rollback", help="move a label back to the version it had before")
    rollback.add_argument("base")
    rollback.add_argument("--label", required=True, metavar="LABEL")

    labels = command("labels", help="show the labels of a base and their history")
    labels.add_argument("base")

    serving = command("serving-config", help="print a TF Serving --model_config_file")
    serving.add_argument("bases", nargs="+", metavar="BASE")
    serving.add_argument(
        "--latest",
        type=int,
        default=2,
        metavar="N",
        help="serve the newest N complete versions besides the labelled ones (default 2)",
    )
    serving.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="model name, once per BASE in order (default: each base's last path component)",
    )
    add_signed_options(serving, "every version served")


def add_signed_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--require-signed --public-key PEM``: refuse unsigned or badly signed versions."""
    parser.add_argument(
        "--require-signed",
        action="store_true",
        help=f"refuse unless {what} is signed by --public-key's key, files intact (exit 4)",
    )
    parser.add_argument(
        "--public-key", metavar="PEM", help="the Ed25519 public key versions must be signed by"
    )


def required_public_key(args: argparse.Namespace) -> str | None:
    """The public key to check versions with (None: no check); a key implies the check.

    Raises:
        ExportValidationError: ``--require-signed`` without ``--public-key``.
    """
    if getattr(args, "require_signed", False) and not args.public_key:
        from export_core.errors import ExportValidationError

        raise ExportValidationError(
            "--require-signed needs --public-key PEM: the public key of the exporter's "
            "signing key (openssl pkey -in signing.pem -pubout -out signing.pub)."
        )
    return getattr(args, "public_key", None)


def run(args: argparse.Namespace, options: dict | None) -> Any:
    """Runs one registry command; returns a JSON-able result (None: not one of these)."""
    from export_core.preflight import check_scheme
    from export_core.registry import labels

    if args.command not in COMMANDS:
        return None
    for base in getattr(args, "bases", None) or [args.base]:
        check_scheme(base, "Path")
    public_key = required_public_key(args)
    if args.command == "serving-config":
        from export_core.registry.serving_config import serving_config

        text = serving_config(
            args.bases, options, latest=args.latest, names=args.names, public_key=public_key
        )
        return {"bases": args.bases, "config": text}
    if args.command == "labels":
        return {"base": args.base, **labels.read_labels(args.base, options).to_dict()}
    if args.command == "label":
        change = labels.set_label(args.base, args.label, args.version, options)
    elif args.command == "promote":
        if public_key is not None:  # before the label moves: nothing changes if refused
            from export_core.registry.signed import require_signed

            require_signed(args.base, [args.version], public_key, options)
        change = labels.promote(args.base, args.version, args.label, options)
    else:
        change = labels.rollback(args.base, args.label, options)
    return {"base": args.base, **change.to_dict()}


def render(command: str, result: Any) -> str | None:
    """Text output of a registry command; None when ``command`` is not one of them."""
    if command not in COMMANDS:
        return None
    if command == "serving-config":
        return result["config"].rstrip("\n")
    if command == "labels":
        return _render_labels(result)
    if not result["changed"]:
        return (
            f"{result['base']}: {result['label']} already points at {result['version']}; "
            "nothing changed"
        )
    was = result["previous"] if result["previous"] is not None else "unset"
    return f"{result['base']}: {result['label']} -> {result['version']} (was {was})"


def _render_labels(result: dict[str, Any]) -> str:
    if not result["labels"]:
        return f"{result['base']}: no labels"
    width = max(len(name) for name in result["labels"])
    rows = []
    for name, version in sorted(result["labels"].items()):
        targets = (result.get("rollback_targets") or {}).get(name)  # newest last
        back = f"  (rollback to {', '.join(map(str, reversed(targets)))})" if targets else ""
        rows.append(f"{name:{width}}  {version}{back}")
    history = result["history"][-HISTORY_SHOWN:]
    rows.append(f"history ({len(result['history'])} events, newest last):")
    for e in history:
        before = e["previous"] if e["previous"] is not None else "-"
        change = f"{e['label']}: {before} -> {e['version']}"
        rows.append(f"  {e['at']}  {e['action']:8} {change}  by {e['by']}")
    return "\n".join(rows)
