"""Reading JSON dataset files, with errors that name the file and say what was expected."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import DatasetError


def read_json(path: str | Path, expected: type = dict) -> Any:
    """Parse the JSON file at ``path``; its top level must be an ``expected`` (dict or list).

    Raises DatasetError for a missing file, an unreadable or truncated file, or another top level.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); is the file truncated?") from None
    except RecursionError:
        raise DatasetError(f"{path}: JSON nested too deeply") from None
    if not isinstance(data, expected):
        want = "an object {...}" if expected is dict else "a list [...]"
        raise DatasetError(f"{path}: expected {want} at the top level, found {type(data).__name__}")
    return data


def is_int(value: Any) -> bool:
    """True for a JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for a finite JSON number (not a bool, NaN or infinity, which Python's json reads but
    cannot write back)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
