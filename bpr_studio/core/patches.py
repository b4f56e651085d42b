"""Boundary patches: dense boxes on boundary pixels, NMS, crops for the network, reassembly.

Boxes are int32 arrays ``(K, 4)`` of ``(x0, y0, x1, y1)`` in image pixels, end-exclusive, always
``patch_size`` wide. A box lies inside the image whenever the image is at least ``patch_size``
on that side; on a smaller image it starts at 0 and its out-of-image part is filled by
replicating the border when cropped and ignored when written back.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .boundary import boundary_score_map, mask_bbox
from .config import RefinerConfig

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def boundary_patches(mask: np.ndarray, patch_size: int = RefinerConfig.patch_size,
                     nms_thr: float = RefinerConfig.nms_thr, bbox: tuple[int, int, int, int] | None = None,
                     origin: tuple[int, int] = (0, 0), shape: tuple[int, int] | None = None) -> np.ndarray:
    """Square patches along the boundary of one mask, NMS-filtered, covering every boundary pixel.

    mask: (H, W) bool. bbox: the mask's ``mask_bbox`` when the caller already has it (saves a pass
    over the mask). Returns (K, 4) int32 boxes ``(x0, y0, x1, y1)``, best-scored first;
    (0, 4) for an empty mask. Work is confined to the mask's bounding box plus one pixel.
    A mask may also be given as a window of its image: ``mask[0, 0]`` is image pixel ``origin``
    (x, y) of an image of ``shape`` (H, W); the window must hold the mask's box and 2 more pixels on
    every side where the image has them. The boxes are then the whole mask's, in image pixels.

    Every pixel with a non-zero boundary score lies inside at least one returned box: greedy NMS
    alone does not promise that (a box whose centre is suppressed can overlap its suppressor by
    less than half a patch), so boundary pixels left uncovered get boxes of their own, best first.
    """
    height, width = mask.shape
    image_height, image_width = shape if shape is not None else mask.shape
    bbox = bbox if bbox is not None else mask_bbox(mask)
    if bbox is None:
        return np.zeros((0, 4), np.int32)
    x0, y0, x1, y1 = bbox
    x0, y0, x1, y1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, width), min(y1 + 1, height)
    # one extra pixel of context so the 3x3 sums inside the window equal the full-image ones
    cx0, cy0, cx1, cy1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, width), min(y1 + 1, height)
    local = boundary_score_map(mask[cy0:cy1, cx0:cx1])[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]
    ys, xs = np.nonzero(local)
    scores = local[ys, xs]
    ys = ys + y0 + origin[1]
    xs = xs + x0 + origin[0]
    order = np.argsort(-scores, kind="stable")
    xs, ys = xs[order], ys[order]
    half = patch_size // 2
    bx = np.clip(xs - half, 0, max(image_width - patch_size, 0)).astype(np.int32)
    by = np.clip(ys - half, 0, max(image_height - patch_size, 0)).astype(np.int32)
    keep = _nms_equal_squares(bx, by, patch_size, nms_thr)
    keep = _cover_missed(xs, ys, bx, by, keep, patch_size)
    kx, ky = bx[keep], by[keep]
    return np.stack([kx, ky, kx + patch_size, ky + patch_size], axis=1).astype(np.int32)


def _nms_equal_squares(bx: np.ndarray, by: np.ndarray, size: int, thr: float) -> np.ndarray:
    """Greedy NMS of equal squares given by their corners (bx, by), already sorted by score.

    Returns the kept indices in order. Two squares of side ``size`` offset by (dx, dy) overlap by
    ``(size - |dx|)(size - |dy|)``; their IoU exceeds ``thr`` when that exceeds
    ``2 thr size^2 / (1 + thr)``.
    """
    limit = 2.0 * thr * size * size / (1.0 + thr)
    idx = np.arange(len(bx))
    kept = []
    while idx.size:
        i = idx[0]
        kept.append(i)
        rest = idx[1:]
        ox = np.maximum(size - np.abs(bx[rest] - bx[i]), 0)
        oy = np.maximum(size - np.abs(by[rest] - by[i]), 0)
        idx = rest[ox * oy <= limit]
    return np.asarray(kept, dtype=np.int64)


def _cover_missed(xs, ys, bx, by, keep: np.ndarray, size: int) -> np.ndarray:
    """Add boxes (best-scored first) until every boundary pixel (xs, ys) lies in a kept box."""
    kept = list(keep)
    uncovered = np.ones(len(xs), bool)
    for i in kept:
        uncovered &= ~_inside(xs, ys, bx[i], by[i], size)
    while uncovered.any():
        i = int(np.argmax(uncovered))  # first uncovered in score order
        kept.append(i)
        uncovered &= ~_inside(xs, ys, bx[i], by[i], size)
    return np.asarray(kept, dtype=np.int64)


def _inside(xs, ys, x0, y0, size) -> np.ndarray:
    return (xs >= x0) & (xs < x0 + size) & (ys >= y0) & (ys < y0 + size)


def crop_boxes(array: np.ndarray, boxes: np.ndarray, padding: int = 0) -> np.ndarray:
    """Cut every box, enlarged by ``padding`` on each side, out of an image or mask.

    array: (H, W) or (H, W, C). boxes: (K, 4) int. Returns (K, S, S) or (K, S, S, C) of the same
    dtype with S = box side + 2 * padding ((0, 0, 0[, C]) for no boxes); parts outside the array
    replicate its border.
    """
    height, width = array.shape[:2]
    if len(boxes) == 0:
        return np.zeros((0, 0, 0) + array.shape[2:], array.dtype)
    side = int(boxes[0, 2] - boxes[0, 0]) + 2 * padding
    out = np.empty((len(boxes), side, side) + array.shape[2:], array.dtype)
    for j, (x0, y0, _, _) in enumerate(boxes):
        x0, y0 = int(x0) - padding, int(y0) - padding
        x1, y1 = x0 + side, y0 + side
        if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
            out[j] = array[y0:y1, x0:x1]
        else:  # replicate the border: clamp the row and column indices
            rows = np.clip(np.arange(y0, y1), 0, height - 1)
            cols = np.clip(np.arange(x0, x1), 0, width - 1)
            out[j] = array[rows[:, None], cols[None, :]]
    return out


def input_affine(mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift), each (4,) float32, that map stacked crops (RGB in 0-255, mask 0/1)
    to the network's input, ``x * scale + shift``: the image normalised by ``mean`` and ``std``, the
    mask to -1 (background) / +1 (foreground)."""
    scale = np.array([1.0 / v for v in std] + [2.0], np.float32)
    shift = np.array([-m / v for m, v in zip(mean, std)] + [-1.0], np.float32)
    return scale, shift


def resize_inputs(x: torch.Tensor, input_size: int) -> torch.Tensor:
    """Normalised inputs (K, 4, S, S) (any device) resized to (K, 4, input_size, input_size): the
    image channels bilinearly, the mask by nearest neighbour; returned as given when S is the size."""
    if x.shape[-1] == input_size:
        return x
    size = (input_size, input_size)
    return torch.cat([F.interpolate(x[:, :3], size=size, mode="bilinear", align_corners=False),
                      F.interpolate(x[:, 3:], size=size, mode="nearest")], dim=1)


def network_inputs(image_crops: np.ndarray, mask_crops: np.ndarray, input_size: int,
                   mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """Stack crops into the network's 4-channel input.

    image_crops: (K, S, S, 3) uint8 RGB. mask_crops: (K, S, S) bool. mean, std: per RGB channel in
    0-255 units (a weights file's ``input_norm``; ImageNet's for every shipped network).
    Returns (K, 4, input_size, input_size) float32: channels 0-2 the image resized bilinearly and
    normalised, channel 3 the mask resized by nearest neighbour and mapped to -1 (background) / +1
    (foreground).

    Built with NumPy (one thread), not torch: between ONNX Runtime calls a torch operation wakes
    torch's OpenMP threads, whose busy-waiting afterwards took a core from ONNX Runtime (the fast path
    measured 1.25x slower on 2 cores, docs/engine_bench.md). Only a resize uses torch.
    """
    k, side = image_crops.shape[:2]
    x = np.empty((k, 4, side, side), np.float32)
    x[:, :3] = image_crops.transpose(0, 3, 1, 2)
    x[:, 3] = mask_crops
    # normalising before resizing is the same: bilinear weights sum to 1, nearest copies
    scale, shift = input_affine(mean, std)
    x *= scale.reshape(1, 4, 1, 1)
    x += shift.reshape(1, 4, 1, 1)
    return resize_inputs(torch.from_numpy(x), input_size)


def foreground_probability(logits: torch.Tensor) -> np.ndarray:
    """(K, C, S, S) logits of any device -> (K, S, S) float32 softmax probability of class 1 (on the CPU
    with NumPy, one thread: see :func:`network_inputs`; on a GPU there, which halves the copy)."""
    if logits.device.type != "cpu":
        return torch.softmax(logits.detach().float(), dim=1)[:, 1].cpu().numpy()
    z = logits.detach().float().numpy()
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e[:, 1] / e.sum(axis=1)


def patch_probabilities(fg_prob: np.ndarray | torch.Tensor, patch_size: int, padding: int = 0) -> np.ndarray:
    """Bring the network's foreground probabilities back to patch resolution.

    fg_prob: (K, input_size, input_size) float (a CPU tensor or array). Resized bilinearly to the crop
    side (patch_size + 2 * padding), then the padding is cut away. Returns (K, patch_size, patch_size)
    float32.
    """
    side = patch_size + 2 * padding
    p = np.asarray(fg_prob, dtype=np.float32)
    if p.shape[-1] != side:
        p = F.interpolate(torch.from_numpy(p).unsqueeze(1), size=(side, side), mode="bilinear",
                          align_corners=False)[:, 0].numpy()
    return p[:, padding:padding + patch_size, padding:padding + patch_size]


def reassemble(coarse: np.ndarray, boxes: np.ndarray, probs: np.ndarray, out: np.ndarray | None = None,
               attached_only: bool = False, margin: float = 0.0, max_shift: int = 0) -> np.ndarray:
    """Write refined patches back into a mask.

    coarse: (H, W) bool. boxes: (K, 4) int. probs: (K, P, P) float foreground probabilities of
    the boxes. Where boxes overlap, probabilities are averaged; a pixel is foreground where the
    average exceeds 0.5; pixels no box reaches keep the coarse value. Work is confined to the union
    of the boxes. ``out`` (H, W) bool, if given, receives the result (it may be ``coarse``).
    attached_only: undo the changes that do not reach the coarse mask's boundary (see
    :func:`undo_detached_changes`). margin: a pixel changes only where the average passes 0.5 by
    more than this (coarse foreground turns background below 0.5 - margin, coarse background turns
    foreground above 0.5 + margin). max_shift: pixels farther than this (px) from the coarse
    boundary keep their coarse value (:func:`near_boundary`; 0 = no limit). Returns the refined
    (H, W) bool mask.
    """
    if out is None:
        out = coarse.copy()
    elif out is not coarse:
        out[...] = coarse
    if len(boxes) == 0:
        return out
    height, width = coarse.shape
    # the union of the boxes, grown by one pixel so that the coarse boundary next to a box is seen
    ux0, uy0 = max(int(boxes[:, 0].min()) - 1, 0), max(int(boxes[:, 1].min()) - 1, 0)
    ux1, uy1 = min(int(boxes[:, 2].max()) + 1, width), min(int(boxes[:, 3].max()) + 1, height)
    before = coarse[uy0:uy1, ux0:ux1].copy() if attached_only or max_shift else None  # out may be coarse
    total = np.zeros((uy1 - uy0, ux1 - ux0), np.float32)
    count = np.zeros((uy1 - uy0, ux1 - ux0), np.float32)
    for (x0, y0, x1, y1), p in zip(boxes, probs):
        x1, y1 = min(int(x1), width), min(int(y1), height)
        h, w = y1 - y0, x1 - x0
        total[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] += p[:h, :w]
        count[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] += 1.0
    window = out[uy0:uy1, ux0:ux1]
    limit = np.where(window, 0.5 - margin, 0.5 + margin) * count if margin else 0.5 * count
    window[...] = np.where(count > 0, total > limit, window)
    if max_shift:
        far = ~near_boundary(before, max_shift)
        window[far] = before[far]
    if attached_only:
        undo_detached_changes(before, window)
    return out


def near_boundary(mask: np.ndarray, distance: float) -> np.ndarray:
    """(h, w) bool: the pixels of the (h, w) bool ``mask`` within ``distance`` px (Euclidean, between
    pixel centres) of a pixel of the other value; the pixels on either side of the boundary are at 1.
    The array's edge is not a boundary (a mask that covers the whole array has no pixel near one)."""
    values = mask.astype(np.uint8)
    inside = cv2.distanceTransform(values, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # to the nearest 0
    outside = cv2.distanceTransform(1 - values, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # to the nearest 1
    return np.where(values > 0, inside, outside) <= distance


def undo_detached_changes(coarse: np.ndarray, refined: np.ndarray) -> None:
    """Give back to ``refined`` the coarse value of every change that does not reach the coarse boundary.

    coarse, refined: (h, w) bool; refined is changed in place. The changes (pixels where the two
    differ) are grouped into 8-connected components; a component is kept when one of its pixels lies
    on the coarse boundary (a pixel whose 3x3 neighbourhood holds both values), else undone. BPR
    refines boundaries: an island or a hole the network opens away from the boundary it was shown
    (in a shadow, in texture inside a large object) is not a boundary correction, and such specks
    were most of the refined masks' boundary pixels far from the truth (docs/training.md).
    """
    changed = (coarse != refined).astype(np.uint8)
    if not changed.any():
        return
    count, labels = cv2.connectedComponents(changed, connectivity=8)
    mask = coarse.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    boundary = cv2.dilate(mask, kernel) != cv2.erode(mask, kernel)
    attached = np.zeros(count, bool)
    attached[labels[boundary]] = True
    attached[0] = False  # label 0: the unchanged pixels
    detached = (changed > 0) & ~attached[labels]
    refined[detached] = coarse[detached]
