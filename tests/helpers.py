"""What many tests share: where the repository and the installed CLI are, and listings."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parents[1])  # the repository
CLI = os.path.join(os.path.dirname(sys.executable), "keras-export")  # the installed command


def names(fs: Any, path: str) -> list[str]:
    """The names of the entries of ``path`` on any fsspec filesystem, sorted (never cached)."""
    fs.invalidate_cache()
    try:
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        return []


def version_folders(base: Any) -> list[str]:
    """The integer-named folders of a local base, sorted; none when it does not exist."""
    base = Path(base)
    return sorted(p.name for p in base.iterdir() if p.name.isdigit()) if base.exists() else []


def files_under(path: Any) -> list[str]:
    """Every file under a local folder, as paths relative to it."""
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files
    )


def write_version(fs, base: str, version: int, *, manifest: bool = True) -> None:
    fs.makedirs(f"{base}/{version}/variables", exist_ok=True)
    fs.pipe_file(f"{base}/{version}/variables/variables.index", b"index")
    fs.pipe_file(f"{base}/{version}/saved_model.pb", b"proto")
    if manifest:
        fs.pipe_file(f"{base}/{version}/export_manifest.json", b"{}")


def make_versions(backend, *versions: int) -> None:
    for version in versions:
        write_version(backend.fs, backend.path, version)


def build_locally(model, base: str, options: dict):
    """validate → clone → trace → write, the steps before anything leaves the machine."""
    import export_core
    from export_core.steps.build import ModeBuilder
    from export_core.steps.validate import validate_export

    plan = validate_export(model, base, storage_options=options)
    dest = export_core.storage.Destination.parse(base, options)
    build_dir = export_core.storage.new_build_dir(dest, plan.timestamped)
    builder = ModeBuilder(model, plan, None)
    for group in builder.groups():
        builder.clone_for(group)
        for mode in group:
            builder.trace(mode)
        builder.build_meta_graphs()
        if builder.holds_every_variable():
            builder.write_checkpoint(build_dir)
        builder.release()
    builder.write_saved_model(build_dir)
    return plan, dest, build_dir
