"""Boundary score maps of binary masks and the bounding windows that contain them."""

from __future__ import annotations

import cv2
import numpy as np

_ONES_3x3 = np.ones((3, 3), np.float32)


def boundary_score_map(mask: np.ndarray) -> np.ndarray:
    """Boundary score of every pixel, as the reference BPR computes it.

    mask: (H, W) bool or {0, 1} array.
    Returns (H, W) float32 in [0, 8/9]: with ``s`` the 3x3 box sum (zero padding), the score is
    ``min(|s - 9|, s) / 4.5``; non-zero exactly where the 3x3 window mixes foreground and
    background, so foreground on the image border counts as boundary.
    """
    s = cv2.filter2D(np.asarray(mask, dtype=np.float32), -1, _ONES_3x3, borderType=cv2.BORDER_CONSTANT)
    return np.minimum(np.abs(s - 9.0), s) / np.float32(4.5)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box of the foreground as (x0, y0, x1, y1), end-exclusive; None for an empty mask.

    mask: (H, W) bool. Reads every row once, then only the rows inside the box.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[y0:y1].any(axis=0))
    return int(cols[0]), y0, int(cols[-1]) + 1, y1
