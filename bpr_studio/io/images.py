"""Reading images from disk: pixels as RGB arrays, sizes from the file header, errors that name the file.

EXIF orientation: pixels are taken as stored, like the header size. Tools that apply the EXIF
rotation (labelme, phone galleries) write annotations of the rotated image; when a dataset file
states the rotated size (width and height swapped, orientation 5-8), the rotation is applied so the
pixels match the annotations. Rotations that keep the size (180 degrees, mirrors) cannot be told
apart that way and are not applied.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""File name endings (lower case) taken for images when a folder is scanned."""

_EXIF_ORIENTATION = 0x0112


def read_image(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file. Returns (H, W, 3) uint8 RGB.

    expected_size: (width, height) in pixels the dataset file states, or None. When the stored
    pixels have the other orientation and the file's EXIF rotation gives ``expected_size``, the
    rotation is applied (see the module docstring). Raises DatasetError naming the file when it is
    missing, cannot be decoded, or its size differs from ``expected_size``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found", path)
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image (expected a PNG, JPEG or other OpenCV-readable file)", path)
    if (expected_size is not None and (image.shape[1], image.shape[0]) != tuple(expected_size)
            and _rotated_size(path) == tuple(expected_size)):
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # OpenCV applies the EXIF orientation by default
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


def _rotated_size(path: Path) -> tuple[int, int] | None:
    """(width, height) after the file's EXIF rotation when that rotation swaps the sides
    (orientation 5-8), else None."""
    try:
        with Image.open(path) as im:
            if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                return int(im.height), int(im.width)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    return None


def check_image_size(path: str | Path, width: int, height: int) -> None:
    """Raise DatasetError when the image at ``path`` is missing, unreadable or not width x height
    (as stored, or after an EXIF rotation that swaps its sides)."""
    actual = image_size(path)
    if actual != (width, height) and _rotated_size(Path(path)) != (width, height):
        raise DatasetError(
            f"{path}: image is {actual[0]}x{actual[1]} pixels, but the dataset file says {width}x{height}", path
        )
