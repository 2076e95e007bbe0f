"""The names this package gives what it writes beside the versions, and what a name means.

* versions: canonical int64 folder names (``version_number``): what TensorFlow Serving
  loads, and the only folders numbering, retention and listings count;
* staging folders, ``.staging-<unix seconds>-<uuid hex>`` (on local disk also naming
  the host and process: ``.staging-<s>-<host>-<pid>-<hex>``), and beside a target
  written with ``timestamped=False``, ``.<leaf>.staging-…``;
* claim markers, ``.claims/<version>``, whose JSON records when and for which build.

Each records when it was made, in its own name or content, so that retention can
tell an abandoned one from a live one without trusting a backend's modification
times (object stores report upload times, local disks whatever the last writer did,
and hosts' clocks differ from the store's); a local one also records its process,
so that a killed export's build can go at once.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid

STAGING_PREFIX = ".staging-"
CLAIMS_DIR = ".claims"


# ".staging-<unix seconds>-<uuid hex>", also at the end of ".<leaf>.staging-…"; a
# local staging folder also names its host and process: ".staging-<s>-<host>-<pid>-<hex>".
_TIMED_STAGING = re.compile(
    re.escape(STAGING_PREFIX)
    + r"(?P<created>\d{1,12})-(?:(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-)?[0-9a-f]{32}$"
)


# TensorFlow Serving loads a folder as a version when its name parses as an int64.
INT64_MAX = 2**63 - 1


_CANONICAL = re.compile(r"0|[1-9][0-9]{0,18}")


def version_number(name: str) -> int | None:
    """The version a folder name stands for, or None when it is not one.

    Only canonical decimal int64 names count (``"17"``, not ``"0017"`` nor a number
    past 2**63 - 1): TensorFlow Serving loads only int64 versions, and a padded name
    would be listed as a version whose path (``<base>/17``) does not exist. Numbering,
    retention, listings and serving configs all go by this one rule.
    """
    if not _CANONICAL.fullmatch(name):
        return None
    number = int(name)
    return number if number <= INT64_MAX else None


def new_staging_name(now: float | None = None, owner: bool = False) -> str:
    """A fresh staging folder name that records its creation time.

    ``.staging-<unix seconds>-<uuid hex>``: not an integer, so TensorFlow Serving
    ignores it, and its age is known from the name alone (see ``staging_created``).
    With ``owner`` (a folder on this host's disk) the name also records this host
    and process, ``.staging-<s>-<host>-<pid>-<hex>``, so that once the process is
    gone (killed) the folder can be removed at once (``staging_owner_gone``).

    Args:
        now: The creation time to record (default: the current time).
        owner: Record this host and process id too.
    """
    seconds = int(time.time() if now is None else now)
    who = f"{host_name()}-{os.getpid()}-" if owner else ""
    return f"{STAGING_PREFIX}{seconds}-{who}{uuid.uuid4().hex}"


def is_staging_name(name: str) -> bool:
    """``.staging-…`` under a base, or ``.<leaf>.staging-…`` beside a target written
    with ``timestamped=False``."""
    return name.startswith(STAGING_PREFIX) or (
        name.startswith(".") and _TIMED_STAGING.search(name) is not None
    )


def staging_created(name: str) -> float | None:
    """The creation time a staging name records, or None for an untimed (older) name."""
    found = _TIMED_STAGING.search(name)
    return float(found.group("created")) if found else None


def staging_owner_gone(name: str) -> bool:
    """Whether a staging name records a process of this host that no longer runs."""
    found = _TIMED_STAGING.search(name)
    if found is None or found.group("pid") is None or found.group("host") != host_name():
        return False
    return not process_alive(int(found.group("pid")))


def host_name() -> str:
    """This host's name, as a file name can hold it (no '-', which separates fields)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (another user's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_record(version: int, now: float | None = None, build_id: str | None = None) -> bytes:
    """The content of a claim marker: JSON with the version, its creation time, the build."""
    created = int(time.time() if now is None else now)
    record = {"version": version, "created": created, "token": uuid.uuid4().hex}
    if build_id:
        record["build_id"] = build_id
    return json.dumps(record, sort_keys=True).encode()


def claim_created(name: str, content: bytes) -> float | None:
    """When a claim marker was made: from its JSON, else from its name.

    Markers written before claims held JSON contain a bare uuid; their name is the
    claimed version, which ``claim_version`` takes from the clock, so it is the
    claim's time unless a caller chose the version. None when neither says.
    """
    try:
        created = json.loads(content).get("created")
    except (ValueError, AttributeError, UnicodeDecodeError):
        created = None
    if isinstance(created, int | float) and not isinstance(created, bool):
        return float(created)
    version = version_number(name)
    return float(version) if version is not None else None
