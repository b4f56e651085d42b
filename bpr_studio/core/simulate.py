"""Coarse-mask simulator: Mask R-CNN-like (28x28) or one-stage-like (1/4 image) predictions from ground truth.

A Mask R-CNN predicts each mask on a 28x28 grid inside its detected box and pastes it back with
bilinear interpolation, so its masks are right in the large but lose thin parts, round corners off
and miss the boundary by a few pixels on large objects. The simulator reproduces that from a
ground-truth mask:

``maskrcnn``  the mask's tight box, each side moved by a normal jitter of ``box_jitter`` times the
              box width (x) or height (y), is cropped, resized to ``grid`` x ``grid`` by area
              averaging, optionally disturbed by smooth noise, resized back bilinearly and
              thresholded at 0.5. Parts outside the jittered box are lost, as with a real detector.
``quarter``   the whole mask is resized to 1/4 of the image by area averaging, optionally
              disturbed, resized back bilinearly and thresholded at 0.5 (one-stage models that
              predict masks at 1/4 resolution).
``contour``   the boundary moved locally, in and out: the mask's signed distance (pixels, positive
              inside) plus a smooth random field (a 7x7 grid over the box with standard deviation
              ``1 + 8 * box_jitter`` px, i.e. 1.4 px at the default, plus a global offset of the same
              spread) is thresholded at 0. Errors of both signs at full resolution, not the rounding
              of a low-resolution grid: it keeps a refiner from learning that masks only ever grow
              or shrink one way.

``noise`` is the standard deviation of a smooth random field (a 7x7 normal grid upsampled
bilinearly) added to the low-resolution probabilities; 0 gives the plain resampling described in the
issue. Each prediction gets a score ``clip(IoU + N(0, 0.1), 0.05, 0.99)``, so better masks tend to
rank higher. Results are deterministic for the random generator given (the command line seeds image ``i`` with
``numpy.random.default_rng([seed, i])``).
"""

from __future__ import annotations

import cv2
import numpy as np

from .boundary import mask_bbox
from .metrics import mask_iou

STYLES = ("maskrcnn", "quarter", "contour")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], std: float) -> np.ndarray:
    """(h, w) float32 smooth random field: a 7x7 N(0, std) grid resized bilinearly."""
    coarse = rng.normal(0.0, std, (7, 7)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _resample(prob: np.ndarray, low: tuple[int, int], rng: np.random.Generator, noise: float,
              threshold: float = 0.5) -> np.ndarray:
    """prob: (h, w) float32 in [0, 1] -> (h, w) bool after area-resizing to ``low`` (w, h), optional
    noise, and bilinear resizing back, thresholded at ``threshold``."""
    h, w = prob.shape
    small = cv2.resize(prob, low, interpolation=cv2.INTER_AREA)
    if noise > 0:
        small = small + _smooth_noise(rng, small.shape, noise)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) >= threshold


def _moved_contour(mask: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator,
                   spread: float) -> np.ndarray:
    """(H, W) bool mask whose boundary moved by a smooth random field of ``spread`` px (see ``contour``)."""
    height, width = mask.shape
    margin = int(np.ceil(4 * spread)) + 2
    x0, y0 = max(box[0] - margin, 0), max(box[1] - margin, 0)
    x1, y1 = min(box[2] + margin, width), min(box[3] + margin, height)
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1]).astype(np.uint8)
    inside = cv2.distanceTransform(crop, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - crop, cv2.DIST_L2, 5)
    signed = np.where(crop > 0, inside, -outside + 1.0) - 0.5  # +-0.5 at the pixels next to the boundary
    field = _smooth_noise(rng, signed.shape, spread) + rng.normal(0.0, spread)
    out = np.zeros((height, width), bool)
    out[y0:y1, x0:x1] = signed + field > 0
    return out


def coarse_mask(mask: np.ndarray, rng: np.random.Generator, style: str = "maskrcnn", box_jitter: float = 0.05,
                grid: int = 28, noise: float = 0.0, threshold: float = 0.5) -> np.ndarray:
    """One simulated coarse prediction of a ground-truth mask.

    mask: (H, W) bool. rng: the random source (box jitter and noise). style: "maskrcnn",
    "quarter" or "contour" (see the module docstring). box_jitter: standard deviation of each box side's shift
    as a fraction of the box size. grid: side of the Mask R-CNN mask grid. noise: standard
    deviation of the smooth noise added to the low-resolution probabilities. threshold: of the
    resampled probabilities (maskrcnn, quarter): below 0.5 masks grow, above they shrink.
    Returns (H, W) bool (empty when the ground truth is empty or vanishes at low resolution).
    """
    if style not in STYLES:
        raise ValueError(f"unknown simulator style {style!r}; expected one of {STYLES}")
    height, width = mask.shape
    out = np.zeros((height, width), bool)
    box = mask_bbox(mask)
    if box is None:
        return out
    prob = mask.astype(np.float32)
    if style == "contour":
        return _moved_contour(mask, box, rng, 1.0 + 8.0 * box_jitter)
    if style == "quarter":
        low = (max(1, round(width / 4)), max(1, round(height / 4)))
        return _resample(prob, low, rng, noise, threshold)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    jx0, jx1 = rng.normal(0.0, box_jitter * bw, 2)
    jy0, jy1 = rng.normal(0.0, box_jitter * bh, 2)
    x0, x1 = int(round(np.clip(x0 + jx0, 0, width - 1))), int(round(np.clip(x1 + jx1, 1, width)))
    y0, y1 = int(round(np.clip(y0 + jy0, 0, height - 1))), int(round(np.clip(y1 + jy1, 1, height)))
    if x1 <= x0 or y1 <= y0:
        return out
    out[y0:y1, x0:x1] = _resample(prob[y0:y1, x0:x1], (grid, grid), rng, noise, threshold)
    return out


def simulate_instances(masks: np.ndarray, rng: np.random.Generator, style: str = "maskrcnn", box_jitter: float = 0.05,
                       grid: int = 28, noise: float = 0.0,
                       threshold: float = 0.5) -> list[tuple[int, np.ndarray, float]]:
    """Simulated predictions of the ground-truth instances of one image.

    masks: (N, H, W) bool. Returns a list of (ground-truth index, coarse (H, W) bool, score) in
    ground-truth order; instances whose coarse mask comes out empty are left out, as a detector
    would miss them.
    """
    out = []
    for j, gt in enumerate(masks):
        coarse = coarse_mask(gt, rng, style=style, box_jitter=box_jitter, grid=grid, noise=noise, threshold=threshold)
        if not coarse.any():
            continue
        score = float(np.clip(mask_iou(coarse, gt) + rng.normal(0.0, 0.1), 0.05, 0.99))
        out.append((j, coarse, score))
    return out
