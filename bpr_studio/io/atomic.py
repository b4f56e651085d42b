"""Safe file writes: every file goes to a temporary file in its own folder and is renamed into place.

A write that fails half-way (full disk, exception while producing the data, killed process)
leaves the previous file as it was; readers never see a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, IO


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600): keep the mode of the file replaced, else rw-r--r--
        os.chmod(tmp_name, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder. Returns the path."""
    return _atomic_write(path, lambda f: f.write(data))


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
        return _atomic_write(path, lambda f: shutil.copyfileobj(src, f))
