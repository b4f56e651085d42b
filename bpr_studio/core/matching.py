"""Matching instances of one image to instances of another set (predictions to ground truth, or back)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .rle import encode_rle, iou


def match_instances(queries: Sequence, query_categories: Sequence[int], candidates: Sequence,
                    candidate_categories: Sequence[int], candidate_crowd: Sequence[bool] | None = None,
                    require_overlap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For every query, the candidate of the same category, not crowd, with the highest IoU.

    queries, candidates: masks of one image, each a COCO RLE dict (any form) or an (H, W) bool
    array; an (N, H, W) array works too. candidate_crowd: crowd flags (crowd candidates never
    match), None = none. Ties go to the lower index; empty masks have IoU 0 with everything.
    require_overlap: a match needs IoU > 0; False takes the first best candidate even at IoU 0.
    Returns (index (M,) int64, -1 where there is no match; iou (M,) float64, 0 there).
    """
    query_rles = [q if isinstance(q, dict) else encode_rle(q) for q in queries]
    candidate_rles = [c if isinstance(c, dict) else encode_rle(c) for c in candidates]
    crowd = np.zeros(len(candidate_rles), bool) if candidate_crowd is None else np.asarray(candidate_crowd, bool)
    allowed = (np.asarray(query_categories)[:, None] == np.asarray(candidate_categories)[None, :]) & ~crowd[None, :]
    ious = np.where(allowed, iou(query_rles, candidate_rles), -1.0)
    index = np.full(len(query_rles), -1, np.int64)
    best = np.zeros(len(query_rles), np.float64)
    if ious.size:
        first = np.argmax(ious, axis=1)
        value = ious[np.arange(len(first)), first]
        found = value > 0 if require_overlap else value >= 0
        index[found], best[found] = first[found], value[found]
    return index, best
