"""Output folders and files that are written whole or not at all.

A command that fails half-way (bad option found late, solver or plot error, Ctrl-C, a full disk) must
not leave a folder or file that looks like a result, nor a mix of old and new results:

* `check_folder(outdir, command)` runs before any work: it refuses an empty name, a path that is a file
  or lies below one, an unwritable place, and a non-empty folder that is not the output of the same
  cartkin command (every output folder holds a marker file, `.cartkin-output`, naming the command and
  the files it wrote).
* `staged_folder(outdir, command)` hands out a temporary folder; when the block ends without an
  exception its files replace the folder's previous cartkin outputs as a whole (files the previous run
  wrote and this one did not are deleted; files cartkin did not write are left alone).
* `staged_files(*paths)` does the same for single files: temporary files beside the targets, moved over
  them with `os.replace` only when every one of them was written.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import CartkinError

MARKER = ".cartkin-output"
_PARTIAL = (".cartkin-", ".partial")


def _marker(outdir: Path) -> dict | None:
    """The marker of a cartkin output folder, or None (no marker, or not readable as one)."""
    try:
        info = json.loads((outdir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("command"), str) \
            or not isinstance(info.get("files", []), list):
        return None
    return info


def _others(outdir: Path) -> list[str]:
    """Entries of a folder other than the marker and abandoned staging folders."""
    return sorted(p.name for p in outdir.iterdir()
                  if p.name != MARKER and not (p.name.startswith(_PARTIAL[0]) and p.name.endswith(_PARTIAL[1])))


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Refuse, before any work, a path whose first existing ancestor is a file or cannot be written."""
    path = Path(path)
    if str(path) == "":
        raise CartkinError(f"the {what} path is empty")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CartkinError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CartkinError(f"cannot write {what} {path}: folder {parent} is not writable")
    return path


def check_folder(outdir: str | Path, command: str | None = None) -> Path:
    """The output folder as a Path; refuses, before any work is done, a path that cannot be an output
    folder of `command` (see the module docstring)."""
    if str(outdir) == "":
        raise CartkinError("the output folder name is empty (give -o FOLDER)")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise CartkinError(f"output path {outdir} exists and is not a folder")
    check_writable(outdir / "x", "output folder")
    if command is None or not outdir.is_dir():
        return outdir
    others = _others(outdir)
    if not others:
        return outdir
    marker = _marker(outdir)
    if marker is None:
        raise CartkinError(f"output folder {outdir} is not empty and is not a cartkin output folder (it holds "
                           f"{others[0]}{' and more' if len(others) > 1 else ''}); choose a new or empty folder")
    if marker["command"] != command:
        raise CartkinError(f"output folder {outdir} holds the output of cartkin {marker['command']}, not of cartkin "
                           f"{command}; choose another folder")
    return outdir


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write_marker(outdir: Path, command: str, files: list[str]) -> None:
    tmp = outdir / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"command": command, "files": sorted(set(files))}, indent=1) + "\n",
                   encoding="utf-8")
    os.replace(tmp, outdir / MARKER)


@contextlib.contextmanager
def staged_folder(outdir: str | Path, command: str | None = None, add: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success its files become `outdir`'s cartkin outputs, on failure it is
    deleted and `outdir` left as it was.

    command: the cartkin command writing the folder (recorded in its marker; checked by `check_folder`).
    The previous outputs of that command are replaced as a whole. add=True adds files to a folder
    instead (vpc beside a fit): they join the folder's marker, whatever its command, and nothing is
    deleted; without a marker, no marker is written."""
    outdir = Path(outdir)
    if not add:
        check_folder(outdir, command)
    elif outdir.exists() and not outdir.is_dir():
        raise CartkinError(f"output path {outdir} exists and is not a folder")
    # inside outdir when it exists (same filesystem even for a mount point or a symlink), else beside it
    home = outdir if outdir.is_dir() else outdir.absolute().parent
    home.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=_PARTIAL[0], suffix=_PARTIAL[1], dir=home))
    try:
        yield stage
        outdir.mkdir(exist_ok=True)
        old = _marker(outdir)
        new = [item.name for item in stage.iterdir()]
        if not add and old is not None:
            for name in old.get("files", []):
                if isinstance(name, str) and name not in new and "/" not in name and name not in ("", ".", ".."):
                    _remove(outdir / name)
        for item in stage.iterdir():
            target = outdir / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            shutil.move(str(item), str(target))  # a rename on one filesystem
        if add:
            if old is not None:
                _write_marker(outdir, old["command"], list(old.get("files", [])) + new)
        elif command is not None:
            _write_marker(outdir, command, new)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_files(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield temporary paths beside `paths` (same suffix, so a figure's format is kept); on success each
    replaces its target with `os.replace`, on failure all are deleted and the targets left as they were."""
    targets = [Path(p) for p in paths]
    temps = []
    try:
        for target in targets:
            parent = target.absolute().parent
            parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=f".partial{target.suffix}", dir=parent)
            os.close(fd)
            temps.append(Path(name))
        yield temps
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    finally:
        for temp in temps:
            if temp.exists():
                temp.unlink()
