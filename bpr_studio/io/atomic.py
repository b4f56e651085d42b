"""Safe file writes: every file goes to a temporary file in its own folder and is renamed into place.

A write that fails half-way (full disk, exception while producing the data, killed process)
leaves the previous file as it was; readers never see a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_write
from .errors import DatasetError


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder. Returns the path."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder. Returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON (UTF-8) to ``path`` through a temporary file. Returns the path.

    The object is serialised completely before the file is touched, so an object that cannot be
    written as JSON leaves the previous file intact.
    """
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_copy(source: str | Path, path: str | Path) -> Path:
    """Copy the file ``source`` to ``path`` through a temporary file in the target folder."""
    with open(source, "rb") as src:
        return atomic_write(path, lambda f: shutil.copyfileobj(src, f))


def marked_read_only(folder: str | Path) -> bool:
    """Whether the existing ``folder`` has no write permission bit set (e.g. ``chmod a-w``). The mark
    counts for root too, who could write anyway: a folder someone made read-only gets no files of
    ours, whoever runs the program. A folder that cannot be looked at counts as marked."""
    try:
        return not Path(folder).stat().st_mode & 0o222
    except OSError:
        return True


def folder_is_writable(folder: str | Path) -> bool:
    """Whether files may be written in the existing ``folder``: the process may write there and the
    folder is not :func:`marked_read_only`."""
    return not marked_read_only(folder) and os.access(folder, os.W_OK)


def check_output_path(path: str | Path, *, folder: bool = False) -> Path:
    """Check, before any work starts, that ``path`` can be written; returns it as a Path.

    folder False: ``path`` is a file to write (it may exist; it must not be a folder). folder
    True: ``path`` is a folder to write files into (it may exist; it must not be a file). Folders
    that do not exist yet must be creatable: the nearest existing one above must be a folder not
    :func:`marked_read_only` that we can write in, which is tested by creating and removing a
    temporary file there, so nothing is left behind. Raises DatasetError naming ``path`` as the user
    gave it.
    """
    path = Path(path).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise DatasetError(f"{path}: is a file; expected a folder to write into")
    if not folder and path.is_dir():
        raise DatasetError(f"{path}: is a folder; expected the path of a file to write")
    probe_in = path if folder else path.parent
    nearest = probe_in
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise DatasetError(f"{path}: cannot create folder {probe_in}, because {nearest} is a file")
    where = "" if nearest == probe_in else f" (to create {probe_in})"
    if marked_read_only(nearest):
        raise DatasetError(f"{path}: cannot write in folder {nearest}{where}: the folder is marked read-only")
    try:
        fd, probe = tempfile.mkstemp(dir=nearest, prefix=".bpr-write-check.", suffix=".tmp")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write in folder {nearest}{where}: "
                           f"{exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)
    return path
