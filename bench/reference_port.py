"""A direct port of the reference BPR's patch extraction and reassembly, for bench/bench_engine.py only.

It follows the reference code (tools/split_patches.py and the merge step): per instance, a boundary
map of the FULL image by a 3x3 box convolution in torch, a box centred on every non-zero pixel of it,
greedy NMS over all of those boxes (mmcv's semantics, written here in numpy), boxes moved back inside
the image, crops by slicing, and reassembly into FULL-image float32 sum and count maps. Two
deliberate differences: boxes are moved back to ``[0, W - patch]`` (the reference moves them one
pixel too far), and scores are sorted stably (so that ties break as in bpr_studio). The reference's
per-instance ``np.pad`` copies of image and masks and its PNG round trips are left out, so this
port is if anything faster than the original.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def find_float_boundary(mask: np.ndarray, width: int = 3) -> np.ndarray:
    """mask: (H, W) {0, 1} -> (H, W) float32 boundary score over the whole image."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    s = F.conv2d(m, m.new_ones((1, 1, width, width)), stride=1, padding=width // 2)
    score = torch.min(torch.abs(s - width * width), torch.abs(s)) / (width * width / 2)
    return score[0, 0].numpy()


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    """Greedy NMS of arbitrary boxes (x0, y0, x1, y1) float32; (N,) kept indices, best first.

    A box is dropped when its IoU with a kept, better-scored box exceeds ``thr`` (mmcv, offset 0).
    """
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0) * (y1 - y0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0)
        h = np.maximum(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thr]
    return np.asarray(keep, dtype=np.int64)


def get_dets(mask: np.ndarray, patch_size: int, nms_thr: float) -> np.ndarray:
    """mask: (H, W) bool -> (K, 4) int32 boxes (x0, y0, x1, y1) inside the image, best first."""
    score = find_float_boundary(mask)
    ys, xs = np.nonzero(score)
    half = patch_size // 2
    boxes = np.stack([xs - half, ys - half, xs + half, ys + half], axis=1).astype(np.float32)
    boxes = boxes[nms(boxes, score[ys, xs], nms_thr)]
    height, width = mask.shape
    bx = np.clip(boxes[:, 0], 0, width - patch_size)  # move back inside the image
    by = np.clip(boxes[:, 1], 0, height - patch_size)
    return np.stack([bx, by, bx + patch_size, by + patch_size], axis=1).astype(np.int32)


def crop(image: np.ndarray, mask: np.ndarray, boxes: np.ndarray) -> tuple[list, list]:
    """Slice every box out of image (H, W, 3) and mask (H, W): two lists of (P, P[, 3]) arrays."""
    images, masks = [], []
    for x0, y0, x1, y1 in boxes:
        images.append(image[y0:y1, x0:x1])
        masks.append(mask[y0:y1, x0:x1])
    return images, masks


def extract(image: np.ndarray, mask: np.ndarray, patch_size: int, nms_thr: float):
    """Boxes (K, 4) and their image and mask crops for one instance, the reference way."""
    boxes = get_dets(mask, patch_size, nms_thr)
    images, masks = crop(image, mask, boxes)
    return boxes, np.stack(images), np.stack(masks)


def reassemble(coarse: np.ndarray, boxes: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """coarse (H, W) bool, boxes (K, 4), probs (K, P, P) -> refined (H, W) bool, full-image maps."""
    total = np.zeros(coarse.shape, np.float32)
    count = np.zeros(coarse.shape, np.float32)
    for (x0, y0, x1, y1), p in zip(boxes, probs):
        total[y0:y1, x0:x1] += p
        count[y0:y1, x0:x1] += 1
    refined = coarse.copy()
    reached = count > 0
    refined[reached] = total[reached] / count[reached] > 0.5
    return refined
