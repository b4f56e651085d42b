"""Snapping refined probabilities to the image's edges: the colour guided filter (He, Sun and Tang,
"Guided Image Filtering", ECCV 2010) with each patch's image crop as the guide.

Within every (2r+1)-px window the output is an affine function of the crop's RGB values fitted to the
probabilities, so where the crop has an edge the probability's transition moves onto it, and where
the crop is flat the probability is smoothed. RefinerConfig.snap turns it on (README, "Snapping to
the image's edges").
"""

from __future__ import annotations

import cv2
import numpy as np

EPS = 1e-3  # the filter's regulariser, in (RGB / 255)^2: smaller follows weaker edges


def snap_to_edges(image_crops: np.ndarray, probs: np.ndarray, radius: int, eps: float = EPS) -> np.ndarray:
    """The colour guided filter of each patch's probabilities, guided by its image crop.

    image_crops: (K, S, S, 3) uint8 RGB. probs: (K, S, S) float32 in [0, 1]. radius: window
    half-side in pixels (>= 1). Returns (K, S, S) float32 in [0, 1]. Windows reflect at the crop's
    border.
    """
    ksize = (2 * radius + 1, 2 * radius + 1)

    def mean(a: np.ndarray) -> np.ndarray:  # window means of every channel of one (S, S, C) patch
        return cv2.boxFilter(a, -1, ksize, borderType=cv2.BORDER_REFLECT)

    guide = image_crops.astype(np.float32) * np.float32(1 / 255)
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    # per pixel, the window means of: I (3), p (1), I * p (3), I_i * I_j for the six pairs (6);
    # channels first, so that each is contiguous for the arithmetic below
    stacked = np.concatenate([guide, probs[..., None], guide * probs[..., None],
                              np.stack([guide[..., i] * guide[..., j] for i, j in pairs], -1)], -1)
    means = np.moveaxis(np.stack([mean(s) for s in stacked]), -1, 0).copy()
    mean_i, mean_p, mean_ip, mean_ii = means[:3], means[3], means[4:7], means[7:]
    cov_ip = mean_ip - mean_i * mean_p
    # the window covariance of I plus eps on the diagonal: (xx, xy, xz, yy, yz, zz)
    xx, xy, xz, yy, yz, zz = (mean_ii[k] - mean_i[i] * mean_i[j] + (eps if i == j else 0.0)
                              for k, (i, j) in enumerate(pairs))
    # a = cov^-1 cov_ip by the adjugate of the symmetric 3x3 matrix
    c_xx, c_xy, c_xz = yy * zz - yz * yz, xz * yz - xy * zz, xy * yz - xz * yy
    c_yy, c_yz, c_zz = xx * zz - xz * xz, xy * xz - xx * yz, xx * yy - xy * xy
    inv_det = 1 / (xx * c_xx + xy * c_xy + xz * c_xz)
    u, v, w = cov_ip
    a = [(c_xx * u + c_xy * v + c_xz * w) * inv_det, (c_xy * u + c_yy * v + c_yz * w) * inv_det,
         (c_xz * u + c_yz * v + c_zz * w) * inv_det]
    b = mean_p - a[0] * mean_i[0] - a[1] * mean_i[1] - a[2] * mean_i[2]
    coefficients = np.stack([mean(s) for s in np.stack(a + [b], -1)])
    out = (coefficients[..., :3] * guide).sum(-1) + coefficients[..., 3]
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)
