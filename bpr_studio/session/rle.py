"""Decoding only the box of a COCO RLE mask, so an 8000 px image's instances are drawn without decoding whole masks."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def rle_counts(rle: dict) -> np.ndarray:
    """Run lengths (int64, background first, column-major) of a compressed or uncompressed COCO RLE.

    Compressed counts are pycocotools' string form (rleFrString in its maskApi.c): 5 bits per
    character with a continuation bit, each count after the second stored relative to the one
    two places before it.
    """
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, np.int64)
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    out: list[int] = []
    p, n = 0, len(data)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return np.asarray(out, np.int64)


def rle_crop(rle: dict) -> tuple[int, int, np.ndarray] | None:
    """The mask of a COCO RLE inside its tight box: (x0, y0, (h, w) bool), or None when it is empty.

    Costs the box's columns times the image height, not the whole image.
    """
    height, width = (int(v) for v in rle["size"])
    compressed = rle
    if isinstance(rle["counts"], list):
        compressed = mask_utils.frPyObjects(rle, height, width)
    elif isinstance(rle["counts"], str):
        compressed = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    bx, by, bw, bh = mask_utils.toBbox(compressed)
    if bw <= 0 or bh <= 0:
        return None
    x0, y0 = int(bx), int(by)
    x1, y1 = x0 + int(bw), y0 + int(bh)
    counts = rle_counts(rle)
    ends = np.cumsum(counts)
    starts = ends - counts
    lo, hi = x0 * height, x1 * height
    lengths = np.clip(ends, lo, hi) - np.clip(starts, lo, hi)
    values = (np.arange(len(counts)) % 2).astype(bool)
    columns = np.repeat(values, lengths).reshape(x1 - x0, height)
    return x0, y0, np.ascontiguousarray(columns.T[y0:y1])
