"""``keras-export export``: the export flow, with Prefect's API server started early.

With no Prefect API configured, a flow runs on Prefect's temporary API server,
which Prefect starts on first use: seconds of a uvicorn subprocess booting its
app and database, after this process has spent seconds importing TensorFlow,
Keras and Prefect. Here the same server (Prefect's own app, as Prefect runs it
for a temporary server) is started first, before those imports, so it boots on
the other core meanwhile. When the settings do name an API (``PREFECT_API_URL``
in the environment, a profile or a settings file), or forbid a temporary
server, the early one is stopped again and Prefect proceeds as usual.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from keras_export.cli.output import Progress


def _die_with(parent: int):
    """A ``preexec_fn`` that makes the child end when this process ends, however it
    ends: ``atexit`` handlers never run on SIGKILL (or an unhandled signal), and a
    child would live on, re-parented to PID 1 (Prefect's server: 270 MB, for ever).
    Linux's ``PR_SET_PDEATHSIG`` has the kernel send the child SIGKILL when its parent
    thread exits (this one: the command's main thread, alive as long as the command).
    Elsewhere (macOS) only the exit handlers stop it."""

    def arm() -> None:
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before the request took hold
            os._exit(1)

    return arm if sys.platform.startswith("linux") else None


class EarlyApiServer:
    """Prefect's temporary API server, started before the heavy imports."""

    def __init__(self, process: subprocess.Popen | None, url: str | None) -> None:
        self.process, self.url = process, url

    @classmethod
    def spawn(cls) -> EarlyApiServer:
        if os.environ.get("PREFECT_API_URL"):
            return cls(None, None)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        import importlib.util

        prefect_dir = os.path.dirname(importlib.util.find_spec("prefect").origin)
        # Prefect makes its home (where the server's database lives) when it starts a
        # server itself; this one starts before Prefect is imported.
        home = os.environ.get("PREFECT_HOME") or os.path.join(os.path.expanduser("~"), ".prefect")
        os.makedirs(os.path.expanduser(home), exist_ok=True)
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        command = [
            sys.executable, "-m", "uvicorn", "--app-dir", os.path.dirname(prefect_dir),
            "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "error", "--lifespan", "on",
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with(os.getpid()),
        )
        atexit.register(cls._stop, process)  # SIGTERM and Ctrl-C: stopped cleanly
        return cls(process, f"http://127.0.0.1:{port}/api")

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def wait_until_ready(self) -> None:
        """Uses the early server if the settings leave Prefect to a temporary one."""
        if self.process is None:
            return
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_SERVER_EPHEMERAL_ENABLED,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            temporary_settings,
        )

        if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            self._stop(self.process)  # an API is configured: Prefect uses it
            return
        timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        if not self._answers(timeout):  # died or never answered (a port taken meanwhile?)
            self._stop(self.process)
            again = EarlyApiServer.spawn()
            self.process, self.url = again.process, again.url
            if not self._answers(timeout):
                self._stop(self.process)
                from export_core.errors import ExportError

                # Not Prefect's own temporary server instead: it would be a child that
                # outlives this command when the command is killed (see _die_with).
                raise ExportError(
                    "Prefect's temporary API server did not start. Point PREFECT_API_URL at "
                    "a running server (prefect server start), or rerun with --verbose to "
                    "see the server's output."
                )
        self._settings = temporary_settings({PREFECT_API_URL: self.url})
        self._settings.__enter__()  # for the rest of this command's process

    def _answers(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except OSError:
                time.sleep(0.05)
        return False


def run_export_command(args, options: dict | None, stream) -> dict:
    """Runs the export flow for ``keras-export export``; returns the flow's result."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    api = EarlyApiServer.spawn()  # boots on the other core while TensorFlow imports
    from export_core import storage
    from keras_export.flows.export import export_keras_model

    api.wait_until_ready()

    bar = Progress("upload", stream)
    with storage.progress_listener(bar):
        try:
            return export_keras_model(
                model=args.model,
                destination=args.dest,
                serving_only=args.serving_only,
                modes=[m.strip() for m in args.modes.split(",")] if args.modes else None,
                as_text=args.as_text,
                input_signature=json.loads(args.input_signature) if args.input_signature else None,
                custom_objects=args.custom_object,
                storage_options=options,
                credentials=args.credentials,
                source_credentials=args.source_credentials,
                keep_versions=args.keep_versions,
                sample_inputs=args.sample_inputs,
                timestamped=not args.no_timestamp,
                full_verify=args.full_verify,
                metadata=json.loads(args.metadata) if args.metadata else None,
                compare_label=args.compare_label,
                allow_breaking_signature=args.allow_breaking_signature,
                warmup=args.warmup,
                cast_inputs=args.cast_inputs,
                signing_key=args.signing_key,
            )
        finally:
            bar.close()
