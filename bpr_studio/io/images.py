"""Reading images from disk: pixels as RGB arrays, sizes from the file header, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""File name endings (lower case) taken for images when a folder is scanned."""


def read_image(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file. Returns (H, W, 3) uint8 RGB.

    expected_size: (width, height) in pixels the dataset file states, or None. Raises
    DatasetError naming the file when it is missing, cannot be decoded, or its decoded size
    differs from ``expected_size``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found", path)
    data = np.fromfile(str(path), dtype=np.uint8)
    # pixels as stored, like the header size and the annotation tools: EXIF rotation is not applied
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image (expected a PNG, JPEG or other OpenCV-readable file)", path)
    if expected_size is not None and (image.shape[1], image.shape[0]) != tuple(expected_size):
        raise DatasetError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]} pixels, "
            f"but the dataset file says {expected_size[0]}x{expected_size[1]}", path
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) in pixels of an image file, read from its header only (no full decode).

    Raises DatasetError naming the file when it is missing or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found", path)
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})", path) from None


def check_image_size(path: str | Path, width: int, height: int) -> None:
    """Raise DatasetError when the image at ``path`` is missing, unreadable or not width x height."""
    actual = image_size(path)
    if actual != (width, height):
        raise DatasetError(
            f"{path}: image is {actual[0]}x{actual[1]} pixels, but the dataset file says {width}x{height}", path
        )
