"""What ``keras-export`` prints: progress bars, results, and one line per error."""

from __future__ import annotations

import json
import sys
from typing import Any


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


def render(command: str, result: Any, field: str | None = None) -> str:
    """Human-readable output for each command."""
    if command in ("inspect", "export"):
        return _render_inspect(result)
    if command == "verify":
        p = result["parity"]
        checked = "match the manifest" if result["manifest_checked"] else "unchecked (no manifest)"
        signed = result.get("signature")
        signed_by = f"; signed by {signed['key_fingerprint']}" if signed else ""
        return (
            f"OK {result['path']}: modes {', '.join(result['modes'])}; files {checked}"
            f"{signed_by}; loaders {', '.join(p['loaders'])}; max |diff| "
            f"{p['max_abs_diff']:.3g} vs {result['compared_with']}"
        )
    if command == "versions":
        if not result:
            return "no versions"
        rows = []
        for v in result:
            status = "complete" if v["complete"] else "INCOMPLETE"
            status += ", verified" if v["verified"] else ", UNVERIFIED"
            row = f"{v['version']}  {status}  {v['created'] or '-'}"
            if v.get("labels"):
                row += f"  [{', '.join(v['labels'])}]"
            if field:
                row += f"  {field}={(v.get('metadata') or {}).get(field, '-')}"
            # Why gc keeps it (export_core.storage.kept); "-": gc --keep 1 (or --keep N) removes it
            row += f"  kept: {', '.join(v.get('kept_because') or ['-'])}"
            rows.append(f"{row}  {v['path']}")
        return "\n".join(rows)
    if command == "diff":
        changes = "; ".join(result["compatible"]) or "no changes"
        return f"compatible: {result['new']} serves clients of {result['old']} ({changes})"
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


# Exit codes, the same for every command (README, "Command line").
EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_EXPORT, EXIT_VERIFY = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report
EXIT_CODES = (
    "exit codes: 0 ok, 2 invalid input, 3 export or storage failed, 4 verification failed, "
    "130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 1 unexpected (rerun with --debug "
    "for the traceback)"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Kubernetes, Docker and ``timeout`` send), raised where the command
    is, so that it stops as Ctrl-C stops it: cleanup runs, nothing is published."""


def raise_on_sigterm() -> None:
    """From now on the first SIGTERM raises ``Terminated``; later ones are ignored, so
    that the cleanup the first one started runs to its end. SIGINT raises
    ``KeyboardInterrupt``, always."""
    import signal

    def terminate(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C raises KeyboardInterrupt wherever the command is, from a handler of our own:
    # asyncio.run (which Prefect's sync calls may use in this thread) replaces only
    # Python's default handler, with one that cancels its task instead, and a
    # cancellation absorbed by a retrying client would lose the Ctrl-C.
    signal.signal(signal.SIGINT, interrupt)


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def classify(exc: BaseException, command: str) -> tuple[str, int]:
    """The kind of error shown to the user and the exit code it ends with."""
    from export_core import errors

    signalled = interruption(exc)
    if signalled is not None:
        what = "nothing was published" if command == "export" else "stopped"
        if not isinstance(signalled, KeyboardInterrupt) or isinstance(signalled, Terminated):
            return f"terminated; {what}", EXIT_TERMINATED
        return f"interrupted; {what}", EXIT_INTERRUPTED
    if isinstance(exc, errors.VerificationError):
        return "verification failed", EXIT_VERIFY
    if isinstance(
        exc,
        errors.ExportValidationError
        | errors.UnsupportedModelError
        | errors.VersionExistsError
        | errors.EnvironmentSetupError,
    ):
        return "invalid input", EXIT_USAGE
    if isinstance(exc, errors.StorageError):
        return "storage error", EXIT_EXPORT
    if isinstance(exc, errors.ExportError):
        return f"{command} failed", EXIT_EXPORT
    return f"unexpected error ({type(exc).__name__})", EXIT_UNEXPECTED


def _is_termination(exc: BaseException) -> bool:
    """Prefect's ``TerminationSignal``: a flow run's SIGTERM (see ``raise_on_sigterm``)."""
    return type(exc).__name__ == "TerminationSignal"


def interruption(exc: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM behind an error, if one is: a signal raised inside a
    context manager can come out as that manager's own error (TensorFlow's device
    scope: "Exiting device scope without proper scope nesting"), the signal as its
    context."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt) or _is_termination(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def print_warnings(result: Any, stream) -> None:
    """What went wrong after a version became visible (retention, the artifact, the
    event): the command succeeded, but the user must hear of it."""
    warnings = result.get("warnings") if isinstance(result, dict) else None
    for warning in warnings or []:
        print(f"keras-export: warning: {one_line(warning)}", file=stream, flush=True)


def one_line(message: str) -> str:
    """A message on one line: AutoGraph and Keras wrap causes across many."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def report_error(exc: BaseException, command: str, as_json: bool, stream) -> int:
    """Prints the error as one line on ``stream`` (or a JSON object on stdout)."""
    kind, code = classify(exc, command)
    message = "" if interruption(exc) is not None else one_line(exc)
    if code == EXIT_UNEXPECTED:
        message += " (rerun with --debug for the traceback)"
    if as_json:
        error = {"kind": kind, "message": message, "exit_code": code}
        print(json.dumps({"error": error}), flush=True)
    else:
        print(
            f"keras-export: {kind}" + (f": {message}" if message else ""), file=stream, flush=True
        )
    return code


class QuietProcess:
    """Keeps TensorFlow's, absl's and Prefect's start-up and log noise off the terminal.

    File descriptor 2 (where TensorFlow's C++ code, Prefect's temporary server and
    the console log handlers write) points at /dev/null while a command runs; the
    command's own output goes to ``stream``, the real stderr. Prefect still sends
    its logs to its API, so the UI keeps the whole story. ``--verbose`` skips this.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stream = sys.stderr
        self._saved: int | None = None

    def __enter__(self) -> QuietProcess:
        if not self.enabled:
            return self
        import os
        import warnings

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.simplefilter("ignore")
        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        self.stream = os.fdopen(os.dup(self._saved), "w", buffering=1)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stream.flush()

    def restore(self) -> None:
        """Gives fd 2 back (for callers that go on after the command in-process)."""
        if self._saved is None:
            return
        import os

        os.dup2(self._saved, 2)
        sys.stderr = sys.__stderr__
        self._saved = None
