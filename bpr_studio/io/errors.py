"""The one error type for bad user input in dataset files, and collecting such errors per image."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class DatasetError(ValueError):
    """A dataset file, image or mask is missing or not what was expected.

    The message always names the file (and the instance, where there is one) and says what was
    expected, so the CLI and the GUI can show it as it is. path: the file at fault when it is
    known and not the file being read (an image named by an annotation file), else None.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


@contextmanager
def collected(errors: list[tuple[Path, str]] | None, path: str | Path) -> Iterator[None]:
    """Run a block that may raise DatasetError for one image or instance.

    errors None: the error propagates. errors a list: ``(file, message)`` is appended, file being
    the error's own ``path`` (e.g. an unreadable image) or else ``path``, and the rest of the block
    is skipped, so a reader leaves out that one image or instance and goes on.
    """
    try:
        yield
    except DatasetError as exc:
        if errors is None:
            raise
        errors.append((exc.path or Path(path), str(exc)))
