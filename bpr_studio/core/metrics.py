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


def _union_window(a: np.ndarray, b: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Slices of the union of both masks' boxes grown by ``margin`` (clipped to the image); None when
    both are empty. Work done inside it equals work done on the whole image for boundary measures,
    as the masks are empty within ``margin`` of every window edge that is not an image edge."""
    rows = np.flatnonzero(a.any(axis=1) | b.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(a[rows[0]:rows[-1] + 1].any(axis=0) | b[rows[0]:rows[-1] + 1].any(axis=0))
    height, width = a.shape
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, height)),
            slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, width)))


def boundary_f_score(pred: np.ndarray, gt: np.ndarray, tolerance: float = 1.0) -> float:
    """Boundary F-score of two (H, W) bool masks with a distance tolerance in pixels.

    A boundary pixel of one mask is matched when a boundary pixel of the other lies within
    ``tolerance`` (Euclidean). Precision over the prediction's boundary, recall over the ground
    truth's; F = 2PR / (P + R). Both empty: 1.0; one empty: 0.0. Work is confined to the union of
    the masks' boxes (plus the tolerance), so small instances in large images are cheap.
    """
    window = _union_window(pred, gt, int(np.ceil(tolerance)) + 2)
    if window is None:
        return 1.0
    bp, bg = mask_boundary(pred[window]), mask_boundary(gt[window])
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


def far_boundary_pixels(pred: np.ndarray, gt: np.ndarray, distance: float = 5.0) -> tuple[int, int]:
    """(n_far, n_boundary): of the boundary pixels of ``pred``, how many lie more than ``distance`` px
    (Euclidean) from every boundary pixel of ``gt``, and how many there are. pred, gt: (H, W) bool.
    A prediction whose ground truth is empty has all its boundary far."""
    window = _union_window(pred, gt, int(np.ceil(distance)) + 2)
    if window is None:
        return 0, 0
    bp, bg = mask_boundary(pred[window]), mask_boundary(gt[window])
    n_p = int(np.count_nonzero(bp))
    if n_p == 0 or not bg.any():
        return n_p, n_p
    dist_to_g = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int(np.count_nonzero(dist_to_g[bp] > distance)), n_p
