"""Which endpoint a store's client will use, and whether anything answers there.

s3fs/botocore take the S3 endpoint from a top-level ``endpoint_url``,
``client_kwargs={"endpoint_url": ...}``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
an AWS config profile's ``endpoint_url``, or else AWS's own endpoint for the region;
gcsfs from ``endpoint_url``, else ``STORAGE_EMULATOR_HOST``, else Google's. Rather than
re-deriving that order, the client itself is asked (``client_endpoint``), and the
endpoint it names is probed with one TCP connection (``probe_endpoint``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from export_core.errors import ExportValidationError, StorageError, safe_message

log = logging.getLogger(__name__)


def is_s3(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "s3" in protocols


PROBE_TIMEOUT = 3.0  # seconds; s3fs config_kwargs.connect_timeout / gcsfs requests_timeout


def unknown_option(fs: Any, exc: BaseException) -> ExportValidationError | None:
    """A backend's complaint about a keyword it does not take, as the caller's mistake."""
    found = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
    if found is None:
        return None
    return ExportValidationError(
        f"storage option '{found.group(1)}' is not one {type(fs).__name__} takes "
        f"({exc}). Fix or remove it in storage_options (CLI --storage-options); for S3 "
        "the client's own options go in client_kwargs or config_kwargs."
    )


def client_endpoint(fs: Any) -> str | None:
    """The URL the store's own client sends its requests to; None when it cannot be known.

    s3fs/botocore take the endpoint from a top-level ``endpoint_url``,
    ``client_kwargs={"endpoint_url": ...}``, ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``, an AWS config profile's ``endpoint_url``, and else AWS's
    own endpoint for the region: the client botocore builds from all of them
    (building it opens no connection) says which it chose. gcsfs takes
    ``endpoint_url``, else ``STORAGE_EMULATOR_HOST``, else Google's endpoint.
    """
    try:
        if is_s3(fs):
            fs.connect()  # the aiobotocore client, from every setting; no request is sent
            return str(fs.s3.meta.endpoint_url)
        if type(fs).__name__ == "GCSFileSystem":
            return str(fs._location)  # noqa: SLF001 - gcsfs's own resolution of the endpoint
    except Exception as exc:  # noqa: BLE001 - unknown: the caller skips what needs it
        problem = unknown_option(fs, exc)
        if problem is not None:
            raise problem from exc
        log.debug("the endpoint of %s cannot be resolved: %s", type(fs).__name__, safe_message(exc))
    return None


def probe_endpoint(fs: Any, uri: str) -> None:
    """One TCP connect to the store's endpoint, so that nothing listening fails in seconds.

    s3fs/botocore and gcsfs retry a refused connection with backoff for 20-35 s
    (and print a traceback per attempt); they keep doing so for real transfers,
    where a flaky network deserves retries. Validation only needs to know that
    something answers. The endpoint is the one the store's client will use
    (``client_endpoint``), wherever it was configured; when it cannot be known
    nothing is probed: no host the user did not configure is ever contacted. The
    timeout follows ``config_kwargs={"connect_timeout": ...}`` (s3fs) or
    ``requests_timeout`` (gcsfs) when given.

    Raises:
        StorageError: The endpoint's host does not resolve or refuses the connection.
    """
    import socket
    from urllib.parse import urlsplit

    endpoint = client_endpoint(fs)
    if not endpoint:
        return
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = (getattr(fs, "config_kwargs", None) or {}).get("connect_timeout") or getattr(
        fs, "requests_timeout", None
    )
    try:
        socket.create_connection(
            (parts.hostname, port), timeout=float(timeout or PROBE_TIMEOUT)
        ).close()
    except OSError as exc:
        raise StorageError(
            f"Cannot access '{uri}': the endpoint {parts.scheme}://{parts.hostname}:{port} "
            f"cannot be reached ({exc.strerror or exc}): check the endpoint (endpoint_url, "
            "client_kwargs, AWS_ENDPOINT_URL, the AWS profile, STORAGE_EMULATOR_HOST), DNS "
            "and the network."
        ) from None
