"""The classical baseline: OpenCV's GrabCut initialised from a coarse mask, for evaluation tables."""

from __future__ import annotations

import cv2
import numpy as np

from .boundary import mask_bbox


def grabcut_mask(image: np.ndarray, coarse: np.ndarray, band: int = 3, iterations: int = 5,
                 margin: int = 16) -> np.ndarray:
    """Refine one coarse mask with ``cv2.grabCut``.

    image: (H, W, 3) uint8 RGB. coarse: (H, W) bool. The coarse mask eroded by ``band`` px is sure
    foreground, the outside of it dilated by ``band`` px is sure background, the band between is
    probable foreground or background as the coarse mask says; ``iterations`` rounds of GrabCut run
    on the mask's box grown by ``band + margin`` px. Returns (H, W) bool; the coarse mask itself when
    it is empty or GrabCut cannot model both sides (no sure pixels of one kind).
    """
    box = mask_bbox(coarse)
    if box is None:
        return coarse.copy()
    height, width = coarse.shape
    grow = band + margin
    x0, y0 = max(box[0] - grow, 0), max(box[1] - grow, 0)
    x1, y1 = min(box[2] + grow, width), min(box[3] + grow, height)
    m = np.ascontiguousarray(coarse[y0:y1, x0:x1]).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    sure_fg = cv2.erode(m, kernel).astype(bool)  # the image border is not a boundary
    maybe = cv2.dilate(m, kernel).astype(bool)
    labels = np.where(maybe, np.where(m > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD), cv2.GC_BGD).astype(np.uint8)
    labels[sure_fg] = cv2.GC_FGD
    if not (labels == cv2.GC_BGD).any() or not sure_fg.any():
        return coarse.copy()
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # OpenCV wants BGR
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour models (e.g. a flat crop)
        return coarse.copy()
    out = np.zeros_like(coarse, dtype=bool)
    out[y0:y1, x0:x1] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return out
