"""Output folders that are written whole or not at all.

A command that fails half-way (bad option found late, solver or plot error, Ctrl-C) must not leave a
folder that looks like a result. `staged_folder` hands out a temporary folder beside the target; its
files move into the target only when the block ends without an exception.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def check_folder(outdir: str | Path) -> Path:
    """The output folder as a Path; refuses, before any work is done, a path that is a file."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(20, "output path exists and is not a folder", str(outdir))
    return outdir


@contextlib.contextmanager
def staged_folder(outdir: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success move its contents into `outdir` (replacing files of the same
    name, keeping others), on failure delete it and leave `outdir` as it was."""
    outdir = check_folder(outdir)
    # inside outdir when it exists (same filesystem even for a mount point or a symlink), else beside it
    home = outdir if outdir.is_dir() else outdir.absolute().parent
    home.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".cartkin-", suffix=".partial", dir=home))
    try:
        yield stage
        outdir.mkdir(exist_ok=True)
        for item in stage.iterdir():
            target = outdir / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            shutil.move(str(item), str(target))  # a rename on one filesystem
    finally:
        shutil.rmtree(stage, ignore_errors=True)
