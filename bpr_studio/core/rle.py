"""COCO RLE masks: the one place that talks to pycocotools' mask API.

Three forms of a COCO RLE dict {'size': [H, W], 'counts': ...} exist: compressed with str counts
(what BPR Studio keeps in memory and writes to JSON), compressed with bytes counts (what
pycocotools' functions take and return), and uncompressed with a list of run lengths (allowed in
COCO files). Every function here accepts any of the three; ``encode_rle`` and
``compressed_text`` give the str form, ``compressed`` the bytes form.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict:
    """mask: (H, W) bool -> compressed COCO RLE {'size': [H, W], 'counts': str}.

    The runs are read from the columns of the mask's box only (no column-major copy of the whole
    image, which costs more than pycocotools' encoding itself) and compressed by pycocotools.
    """
    mask = np.asarray(mask, bool)
    height, width = mask.shape
    columns = np.flatnonzero(mask.any(0))
    if len(columns) == 0:
        runs = [height * width]
    else:
        x0, x1 = int(columns[0]), int(columns[-1]) + 1
        band = mask[:, x0:x1].T.ravel()  # the box's columns, column-major
        bounds = np.concatenate([[0], np.flatnonzero(band[1:] != band[:-1]) + 1, [len(band)]])
        runs = ([0] if band[0] else []) + np.diff(bounds).tolist()
        runs[0] += x0 * height
        if not band[-1]:
            runs[-1] += (width - x1) * height
        elif x1 < width:
            runs.append((width - x1) * height)
    return compressed_text({"size": [height, width], "counts": runs})


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE of any form -> (H, W) bool."""
    return mask_utils.decode(compressed(rle)).view(bool)  # 0/1 uint8 -> bool without a copy


def compressed(rle: dict) -> dict:
    """COCO RLE of any form -> pycocotools' form {'size': [H, W], 'counts': bytes}."""
    counts = rle["counts"]
    if isinstance(counts, list):
        h, w = rle["size"]
        return mask_utils.frPyObjects(rle, h, w)
    if isinstance(counts, str):
        return {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    return rle


def compressed_text(rle: dict) -> dict:
    """COCO RLE of any form -> {'size': [H, W], 'counts': str} (the form kept in memory and in JSON)."""
    counts = compressed(rle)["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii")}


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict:
    """COCO polygons [[x0, y0, x1, y1, ...], ...] (checked by the caller) -> compressed RLE
    {'size': [H, W], 'counts': str} of their union, rasterised as pycocotools does."""
    return compressed_text(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)))


def area(rle: dict) -> int:
    """Foreground pixels of a COCO RLE."""
    return int(mask_utils.area(compressed(rle)))


def bbox(rle: dict) -> list[float]:
    """COCO box [x, y, w, h] of a COCO RLE ([0, 0, 0, 0] when empty)."""
    return [float(v) for v in mask_utils.toBbox(compressed(rle))]


def xor_area(a: dict, b: dict) -> int:
    """Pixels in exactly one of two COCO RLE masks of the same size."""
    a, b = compressed(a), compressed(b)
    both = mask_utils.area(mask_utils.merge([a, b], intersect=True))
    return int(mask_utils.area(a) + mask_utils.area(b) - 2 * both)


def iou(a: list[dict], b: list[dict]) -> np.ndarray:
    """(len(a), len(b)) float64 IoU of every pair of COCO RLE masks (all of one size); 0 where
    both are empty."""
    if not a or not b:
        return np.zeros((len(a), len(b)), np.float64)
    return np.asarray(mask_utils.iou([compressed(r) for r in a], [compressed(r) for r in b], [0] * len(b)),
                      np.float64).reshape(len(a), len(b))


def rle_counts(rle: dict) -> np.ndarray:
    """Run lengths (int64, background first, column-major) of a COCO RLE of any form.

    pycocotools has no public function for these. Compressed counts are its string form (rleFrString
    in its maskApi.c): 5 bits per character with a continuation bit, each count after the second
    stored relative to the one two places before it. ValueError when a counts string is malformed
    (a character outside '0'..'o', a truncated count, a count outside [0, 2**32)).
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
            if p >= n:
                raise ValueError("compressed RLE counts end inside a count")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"compressed RLE counts hold the character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        if not 0 <= x < 2**32:
            raise ValueError(f"compressed RLE counts hold the run length {x}")
        out.append(x)
    return np.asarray(out, np.int64)


def rle_crop(rle: dict) -> tuple[int, int, np.ndarray] | None:
    """The mask of a COCO RLE inside its tight box: (x0, y0, (h, w) bool), or None when it is empty.

    Costs the box's columns times the image height, not the whole image.
    """
    height = int(rle["size"][0])
    bx, by, bw, bh = bbox(rle)
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
