"""Safe file writes: every file goes to a temporary file in its own folder and is renamed into place.

A write that fails half-way (full disk, exception while producing the data, killed process)
leaves the previous file as it was; readers never see a half-written file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_write


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
