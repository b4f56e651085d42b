"""Atomic file writes: a temporary file in the target's folder, renamed into place when complete."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(binary file)`` on a temporary file beside ``path``, then rename it to ``path``.

    A write that fails half-way (full disk, an exception in ``write``, a killed process) leaves the
    previous file as it was; readers never see a half-written file. The file keeps the mode of the
    file it replaces (rw-r--r-- for a new one). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
