"""Rasterising touch-up tools (round brush strokes, polygons) into a small window of the image."""

from __future__ import annotations

import math

import cv2
import numpy as np


def stroke_window(shape: tuple[int, int], points, radius: float):
    """The pixels a round brush of ``radius`` covers along a polyline, clipped to the image.

    shape: (H, W) of the image. points: (N, 2) float (x, y) image pixels, N >= 1, may lie outside
    the image. radius: brush radius in pixels (>= 0.5).
    Returns ((x0, y0, x1, y1) window end-exclusive, (y1 - y0, x1 - x0) bool covered pixels), or
    None when the stroke misses the image.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    r = max(0.5, float(radius))
    return _window_draw(shape, pts, r, lambda canvas, local: _draw_stroke(canvas, local, r))


def polygon_window(shape: tuple[int, int], points):
    """The pixels inside a polygon, clipped to the image.

    points: (N, 2) float (x, y) image pixels, N >= 3. Returns like :func:`stroke_window`.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return None
    return _window_draw(shape, pts, 0.5, lambda canvas, local: cv2.fillPoly(canvas, [local], 1))


def _window_draw(shape, pts: np.ndarray, margin: float, draw):
    height, width = shape
    x0 = max(int(math.floor(pts[:, 0].min() - margin)), 0)
    y0 = max(int(math.floor(pts[:, 1].min() - margin)), 0)
    x1 = min(int(math.ceil(pts[:, 0].max() + margin)) + 1, width)
    y1 = min(int(math.ceil(pts[:, 1].max() + margin)) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    local = np.round(pts - (x0, y0)).astype(np.int32)
    draw(canvas, local)
    covered = canvas.astype(bool)
    if not covered.any():
        return None
    return (x0, y0, x1, y1), covered


def _draw_stroke(canvas: np.ndarray, local: np.ndarray, radius: float) -> None:
    r = int(round(radius))  # 0 is a one-pixel brush
    for (xa, ya), (xb, yb) in zip(local[:-1], local[1:]):
        cv2.line(canvas, (int(xa), int(ya)), (int(xb), int(yb)), 1, 2 * r + 1)
    for x, y in local:
        cv2.circle(canvas, (int(x), int(y)), r, 1, -1)
