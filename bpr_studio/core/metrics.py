"""Mask quality measures: IoU and boundary F-score of single masks."""

from __future__ import annotations

import cv2
import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty."""
    union = np.count_nonzero(a | b)
    if union == 0:
        return 1.0
    return np.count_nonzero(a & b) / union


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool mask -> (H, W) bool one-pixel inner boundary (foreground pixels with a
    4-neighbour in the background; the image border counts as background)."""
    m = np.pad(mask.astype(np.uint8), 1)
    eroded = cv2.erode(m, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))
    return (m.astype(bool) & ~eroded.astype(bool))[1:-1, 1:-1]


def boundary_f_score(pred: np.ndarray, gt: np.ndarray, tolerance: float = 1.0) -> float:
    """Boundary F-score of two (H, W) bool masks with a distance tolerance in pixels.

    A boundary pixel of one mask is matched when a boundary pixel of the other lies within
    ``tolerance`` (Euclidean). Precision over the prediction's boundary, recall over the ground
    truth's; F = 2PR / (P + R). Both empty: 1.0; one empty: 0.0.
    """
    bp, bg = mask_boundary(pred), mask_boundary(gt)
    n_p, n_g = np.count_nonzero(bp), np.count_nonzero(bg)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    dist_to_g = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist_to_p = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    precision = np.count_nonzero(dist_to_g[bp] <= tolerance) / n_p
    recall = np.count_nonzero(dist_to_p[bg] <= tolerance) / n_g
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)
