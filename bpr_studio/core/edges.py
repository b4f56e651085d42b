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
# Patches filtered together: their (S, S, K) planes stay within 32768 float32 (128 KB), which
# malloc serves from its heap rather than from fresh pages of the kernel. 64-px patches 32 at a time
# page-faulted on every call in a thread (the pipelined engine's refiners): 13.0 ms per 32 patches,
# against 4.6 ms 8 at a time. OpenCV's Python binding passes at most 128 channels.
_PLANE_FLOATS = 32768
_MAX_PATCHES = 128


def snap_to_edges(image_crops: np.ndarray, probs: np.ndarray, radius: int, eps: float = EPS) -> np.ndarray:
    """The colour guided filter of each patch's probabilities, guided by its image crop.

    image_crops: (K, S, S, 3) uint8 RGB. probs: (K, S, S) float32 in [0, 1]. radius: window
    half-side in pixels (>= 1). Returns (K, S, S) float32 in [0, 1]. Windows reflect at the crop's
    border.
    """
    if len(probs) == 0:
        return np.zeros(probs.shape, np.float32)
    chunk = max(1, min(_MAX_PATCHES, _PLANE_FLOATS // probs[0].size))
    if len(probs) > chunk:
        return np.concatenate([snap_to_edges(image_crops[i:i + chunk], probs[i:i + chunk], radius, eps)
                               for i in range(0, len(probs), chunk)])
    ksize = (2 * radius + 1, 2 * radius + 1)

    def mean(a: np.ndarray) -> np.ndarray:  # window means of an (S, S, K) plane, each patch alone
        return cv2.boxFilter(a, -1, ksize, borderType=cv2.BORDER_REFLECT).reshape(a.shape)

    # every quantity is an (S, S, K) plane, the patches in OpenCV's channels: one call filters them all
    guide = [np.ascontiguousarray(image_crops[..., c].transpose(1, 2, 0), dtype=np.float32) * np.float32(1 / 255)
             for c in range(3)]
    p = np.ascontiguousarray(probs.transpose(1, 2, 0), dtype=np.float32)
    mean_i = [mean(g) for g in guide]
    mean_p = mean(p)
    u, v, w = (mean(g * p) - m * mean_p for g, m in zip(guide, mean_i))  # the window covariance of I and p
    # the window covariance of I plus eps on the diagonal
    xx, xy, xz, yy, yz, zz = (mean(guide[i] * guide[j]) - mean_i[i] * mean_i[j] + (eps if i == j else 0.0)
                              for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    # a = cov^-1 (u, v, w) by the adjugate of the symmetric 3x3 matrix, b = mean_p - a . mean_i
    c_xx, c_xy, c_xz = yy * zz - yz * yz, xz * yz - xy * zz, xy * yz - xz * yy
    c_yy, c_yz, c_zz = xx * zz - xz * xz, xy * xz - xx * yz, xx * yy - xy * xy
    inv_det = 1 / (xx * c_xx + xy * c_xy + xz * c_xz)
    a = [(c_xx * u + c_xy * v + c_xz * w) * inv_det, (c_xy * u + c_yy * v + c_yz * w) * inv_det,
         (c_xz * u + c_yz * v + c_zz * w) * inv_det]
    b = mean_p - a[0] * mean_i[0] - a[1] * mean_i[1] - a[2] * mean_i[2]
    out = mean(a[0]) * guide[0] + mean(a[1]) * guide[1] + mean(a[2]) * guide[2] + mean(b)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0, out=out).transpose(2, 0, 1))
