"""Listing, reading and removing on a store that other runs change at the same time.

A path listed a moment ago and gone when it is read or removed was taken by another
run (an export's cleanup, a concurrent retention run): its ``FileNotFoundError`` is
the outcome wanted, and is swallowed here, and only here. Any other backend error is
a ``StorageError`` naming the operation and the path. Listings are never cached.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from export_core.storage.backend import Destination, storage_error


def entries(dest: Destination, path: str) -> list[tuple[str, str]]:
    """``(name, path)`` of the entries of ``path``; none when it is gone."""
    dest.fs.invalidate_cache(path)  # other processes write here: never trust a cached listing
    try:
        entries = dest.fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Listing '{dest.uri_of(path)}' failed", exc) from exc
    return [(entry.rstrip("/").rsplit("/", 1)[-1], entry.rstrip("/")) for entry in entries]


def read_if_present(dest: Destination, path: str) -> bytes | None:
    try:
        return dest.fs.cat_file(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Reading '{dest.uri_of(path)}' failed", exc) from exc


def remove_if_present(dest: Destination, path: str, recursive: bool = False) -> None:
    try:
        if dest.is_local:
            _remove_local(path)
        else:
            dest.fs.rm(path, recursive=recursive)
    except FileNotFoundError:
        return  # another run removed it first: the outcome we wanted
    except Exception as exc:  # noqa: BLE001 - backends raise their own error types
        raise storage_error(f"Removing '{dest.uri_of(path)}' failed", exc) from exc


def _remove_local(path: str) -> None:
    if not os.path.isdir(path) or os.path.islink(path):
        os.remove(path)
    elif sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_skip_vanished)
    else:
        shutil.rmtree(path, onerror=lambda func, p, info: _skip_vanished(func, p, info[1]))


def _skip_vanished(_func: Any, _path: str, exc: BaseException) -> None:
    # Two runs taking the same tree apart: each skips what the other removed first,
    # and carries on, so neither stops half-way.
    if not isinstance(exc, FileNotFoundError):
        raise exc
