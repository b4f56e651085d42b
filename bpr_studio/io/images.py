"""Reading images from disk as RGB arrays, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file. Returns (H, W, 3) uint8 RGB.

    Raises DatasetError naming the file when it is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image (expected a PNG, JPEG or other OpenCV-readable file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
