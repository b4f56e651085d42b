"""Per-instance and per-patch refinement quality, and the orderings that bring failures to the top.

With ground truth: IoU and boundary F (1 px tolerance) of the coarse and of the refined mask
against the matched ground-truth instance. A prediction is matched to the ground-truth instance of
the same category (crowd regions excluded) with which its *coarse* mask has the highest IoU; the
matching is not one-to-one (two predictions may share a ground truth), and a prediction that
overlaps none is unmatched and scores 0 before and after.

Without ground truth: two figures from the refiner itself, both over the *refined region* (the
pixels inside at least one of the instance's boundary patches):
``uncertain_share``, the share whose foreground probability (averaged over overlapping patches,
as the reassembly does) lies in [0.3, 0.7], and ``changed_share``, the share whose value differs
between the coarse and the refined mask.

Pure numpy (plus OpenCV through ``metrics``); no Qt, no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .boundary import mask_bbox
from .matching import match_instances
from .metrics import boundary_f_score, mask_iou

SMALL_AREA = 32 * 32
"""Instances whose coarse mask has fewer pixels than this are "small" (COCO's definition)."""
UNCERTAIN_RANGE = (0.3, 0.7)
"""Foreground probabilities in this closed range count as uncertain."""
BOUNDARY_TOLERANCE = 1.0
"""Boundary F tolerance in pixels."""


class MaskShapeError(ValueError):
    """Masks of one image that are not all the same (H, W)."""


@dataclass(frozen=True)
class InstanceQuality:
    """The quality figures of one predicted instance.

    image_index, instance_index: position in the dataset (or session). area: coarse mask pixels.
    gt_index: index of the matched ground-truth instance in the image's ground-truth list, None
    when there is no ground truth or no same-category overlap. iou_* and bf_* are in [0, 1], None
    without ground truth (``*_after`` also None before refinement). uncertain_share and
    changed_share are in [0, 1]; uncertain_share is None when no probabilities are known (refined
    masks read from a file), both are None before refinement. n_patches: boundary patches.
    """

    image_index: int
    instance_index: int
    category_id: int
    area: int
    image_name: str = ""
    gt_index: int | None = None
    iou_before: float | None = None
    iou_after: float | None = None
    bf_before: float | None = None
    bf_after: float | None = None
    uncertain_share: float | None = None
    changed_share: float | None = None
    n_patches: int = 0

    @property
    def iou_change(self) -> float | None:
        """IoU after minus IoU before (negative: refinement hurt), None when either is unknown."""
        if self.iou_before is None or self.iou_after is None:
            return None
        return self.iou_after - self.iou_before

    @property
    def bf_change(self) -> float | None:
        """Boundary F after minus before, None when either is unknown."""
        if self.bf_before is None or self.bf_after is None:
            return None
        return self.bf_after - self.bf_before


@dataclass(frozen=True)
class PatchQuality:
    """The figures of one boundary patch of an instance.

    box: (x0, y0, x1, y1) int image pixels, end-exclusive (may reach past a small image).
    iou_before / iou_after: IoU of the coarse / refined mask with the ground truth inside the box
    (the part within the image), None without ground truth. uncertain_share: share of the box's
    in-image pixels whose own patch probability lies in UNCERTAIN_RANGE, None without
    probabilities.
    """

    index: int
    box: tuple[int, int, int, int]
    iou_before: float | None = None
    iou_after: float | None = None
    uncertain_share: float | None = None

    @property
    def iou_change(self) -> float | None:
        if self.iou_before is None or self.iou_after is None:
            return None
        return self.iou_after - self.iou_before


def measure_instance(
    coarse: np.ndarray,
    refined: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    *,
    image_index: int = 0,
    instance_index: int = 0,
    category_id: int = 0,
    image_name: str = "",
    gt_index: int | None = None,
    has_ground_truth: bool | None = None,
) -> InstanceQuality:
    """Quality figures of one instance.

    coarse, refined, gt: (H, W) bool (refined None before refinement; gt None when unmatched or
    without ground truth). boxes: (K, 4) int patch boxes of the refinement; probs: (K, P, P)
    float32 their foreground probabilities (None when unknown). has_ground_truth: whether the
    image has ground truth at all (default: ``gt is not None``); with ground truth but no match,
    the IoU and boundary F figures are 0. MaskShapeError when refined or gt is not coarse's size.
    """
    check_shapes(coarse.shape, {"refined mask": refined, "ground-truth mask": gt})
    if has_ground_truth is None:
        has_ground_truth = gt is not None
    figures: dict = {}
    if has_ground_truth:
        if gt is None:
            figures.update(iou_before=0.0, bf_before=0.0)
            if refined is not None:
                figures.update(iou_after=0.0, bf_after=0.0)
        else:
            figures.update(_versus_ground_truth(coarse, refined, gt))
    n_patches = 0
    if refined is not None:
        if boxes is None:
            boxes = np.zeros((0, 4), np.int32)
        n_patches = len(boxes)
        figures.update(_refinement_shares(coarse, refined, boxes, probs))
    return InstanceQuality(
        image_index=image_index,
        instance_index=instance_index,
        category_id=int(category_id),
        area=int(np.count_nonzero(coarse)),
        image_name=image_name,
        gt_index=gt_index,
        n_patches=n_patches,
        **figures,
    )


def measure_image(
    coarse_masks: Sequence[np.ndarray],
    category_ids: Sequence[int],
    refined_masks: Sequence[np.ndarray | None] | None = None,
    boxes: Sequence[np.ndarray | None] | None = None,
    probs: Sequence[np.ndarray | None] | None = None,
    gt_masks: Sequence[np.ndarray] | None = None,
    gt_category_ids: Sequence[int] | None = None,
    gt_iscrowd: Sequence[bool] | None = None,
    *,
    image_index: int = 0,
    image_name: str = "",
) -> list[InstanceQuality]:
    """Quality figures of every instance of one image, matched to its ground truth.

    coarse_masks: N masks (H, W) bool with category_ids (N,). refined_masks, boxes, probs: per
    instance as in ``measure_instance`` (None entries, or None for all). gt_masks: M masks (H, W)
    bool with gt_category_ids (M,) and gt_iscrowd (M,), or None when the image has no ground truth.
    """
    n = len(coarse_masks)
    refined_masks = refined_masks if refined_masks is not None else [None] * n
    boxes = boxes if boxes is not None else [None] * n
    probs = probs if probs is not None else [None] * n
    if gt_masks is not None:
        for mask in coarse_masks:
            check_shapes(mask.shape, {f"ground-truth mask {m}": g for m, g in enumerate(gt_masks)})
        matched, _ = match_instances(coarse_masks, category_ids, gt_masks, gt_category_ids, gt_iscrowd)
    records = []
    for j in range(n):
        gt_index, gt = None, None
        if gt_masks is not None and matched[j] >= 0:
            gt_index = int(matched[j])
            gt = gt_masks[gt_index]
        records.append(
            measure_instance(
                coarse_masks[j], refined_masks[j], boxes[j], probs[j], gt,
                image_index=image_index, instance_index=j, category_id=category_ids[j],
                image_name=image_name, gt_index=gt_index, has_ground_truth=gt_masks is not None,
            )
        )
    return records


def measure_patches(
    coarse: np.ndarray,
    refined: np.ndarray,
    boxes: np.ndarray,
    probs: np.ndarray | None = None,
    gt: np.ndarray | None = None,
) -> list[PatchQuality]:
    """Figures of every boundary patch of one instance, in the order of ``boxes``.

    coarse, refined, gt: (H, W) bool (gt None without ground truth). boxes: (K, 4) int.
    probs: (K, P, P) float32 or None.
    """
    height, width = coarse.shape
    out = []
    for k, box in enumerate(np.asarray(boxes)):
        x0, y0, x1, y1 = (int(v) for v in box)
        cx1, cy1 = min(x1, width), min(y1, height)
        figures: dict = {}
        if gt is not None:
            g = gt[y0:cy1, x0:cx1]
            figures["iou_before"] = float(mask_iou(coarse[y0:cy1, x0:cx1], g))
            figures["iou_after"] = float(mask_iou(refined[y0:cy1, x0:cx1], g))
        if probs is not None:
            p = probs[k][: cy1 - y0, : cx1 - x0]
            figures["uncertain_share"] = float(np.mean(_uncertain(p))) if p.size else 0.0
        out.append(PatchQuality(index=k, box=(x0, y0, x1, y1), **figures))
    return out


def worst_patches_first(patches: Sequence[PatchQuality]) -> list[PatchQuality]:
    """Patches ordered for the gallery: largest IoU loss first when ground truth is known, else
    most uncertain first; ties keep the original order."""
    return sorted(patches, key=_patch_key)


def _patch_key(p: PatchQuality) -> tuple:
    change = p.iou_change
    return (change if change is not None else np.inf, -(p.uncertain_share or 0.0))


# ---- orderings and filters over InstanceQuality records ------------------------------------

def worst_change_key(q: InstanceQuality) -> tuple:
    """Sort key, "worst change first": most negative IoU change first; instances without an IoU
    change (no ground truth or not refined) after them, most uncertain first."""
    change = q.iou_change
    return (0, change, 0.0) if change is not None else (1, 0.0, -_uncertainty(q))


def most_uncertain_key(q: InstanceQuality) -> tuple:
    """Sort key, "most uncertain": highest uncertain_share first, ties by highest changed_share;
    instances without probabilities last."""
    if q.uncertain_share is None:
        return (1, -(q.changed_share or 0.0), 0.0)
    return (0, -q.uncertain_share, -(q.changed_share or 0.0))


def image_order_key(q: InstanceQuality) -> tuple:
    """Sort key: dataset order (image, then instance)."""
    return (q.image_index, q.instance_index)


def got_worse(q: InstanceQuality) -> bool:
    """Filter: refinement lowered the IoU with the ground truth (False when unknown)."""
    change = q.iou_change
    return change is not None and change < 0.0


def is_small(q: InstanceQuality, max_area: int = SMALL_AREA) -> bool:
    """Filter: the coarse mask has fewer than ``max_area`` pixels."""
    return q.area < max_area


def keep_all(q: InstanceQuality) -> bool:
    """Filter: every instance."""
    return True


SORTS: dict[str, tuple[str, Callable[[InstanceQuality], tuple]]] = {
    "worst_change": ("Worst change", worst_change_key),
    "most_uncertain": ("Most uncertain", most_uncertain_key),
    "image_order": ("Image order", image_order_key),
}
"""Sort name -> (label for a menu, key function)."""

FILTERS: dict[str, tuple[str, Callable[[InstanceQuality], bool]]] = {
    "all": ("All instances", keep_all),
    "got_worse": ("Got worse", got_worse),
    "small": (f"Small (< {SMALL_AREA} px)", is_small),
}
"""Filter name -> (label for a menu, predicate)."""


def rank_instances(records: Sequence[InstanceQuality], sort: str = "worst_change",
                   keep: str = "all") -> list[InstanceQuality]:
    """The records that pass filter ``keep``, ordered by sort ``sort`` (names from SORTS, FILTERS).

    Raises ValueError for an unknown name.
    """
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; expected one of {sorted(SORTS)}")
    if keep not in FILTERS:
        raise ValueError(f"unknown filter {keep!r}; expected one of {sorted(FILTERS)}")
    predicate = FILTERS[keep][1]
    return sorted((q for q in records if predicate(q)), key=SORTS[sort][1])


# ---- helpers ---------------------------------------------------------------------------------

def check_shapes(shape: tuple, masks: dict) -> None:
    """Raise MaskShapeError naming the first of ``masks`` (name -> an array, its (H, W) size, or
    None) not of ``shape`` (H, W)."""
    for name, mask in masks.items():
        size = None if mask is None else tuple(int(n) for n in getattr(mask, "shape", mask))
        if size is not None and size != tuple(shape):
            raise MaskShapeError(f"{name} is {size[1]}x{size[0]} pixels, expected {shape[1]}x{shape[0]}")


def _uncertainty(q: InstanceQuality) -> float:
    return q.uncertain_share if q.uncertain_share is not None else 0.0


def _uncertain(p: np.ndarray) -> np.ndarray:
    lo, hi = UNCERTAIN_RANGE
    return (p >= lo) & (p <= hi)


def _window(shape: tuple[int, int], boxes, margin: int) -> tuple[slice, slice]:
    """Slices of the union of (x0, y0, x1, y1) boxes grown by ``margin`` and clipped to shape."""
    height, width = shape
    x0 = max(min(b[0] for b in boxes) - margin, 0)
    y0 = max(min(b[1] for b in boxes) - margin, 0)
    x1 = min(max(b[2] for b in boxes) + margin, width)
    y1 = min(max(b[3] for b in boxes) + margin, height)
    return slice(y0, y1), slice(x0, x1)


def _versus_ground_truth(coarse: np.ndarray, refined: np.ndarray | None, gt: np.ndarray) -> dict:
    """IoU and boundary F of coarse (and refined) against gt, computed on the union of their
    boxes grown by two pixels: every boundary pixel and its 1-px neighbourhood lie inside, so the
    figures equal the full-image ones."""
    masks = [m for m in (coarse, refined, gt) if m is not None]
    boxes = [b for b in (mask_bbox(m) for m in masks) if b is not None]
    if not boxes:  # all empty
        boxes = [(0, 0, 0, 0)]
    win = _window(gt.shape, boxes, margin=int(np.ceil(BOUNDARY_TOLERANCE)) + 1)
    g = gt[win]
    figures = {
        "iou_before": float(mask_iou(coarse[win], g)),
        "bf_before": float(boundary_f_score(coarse[win], g, BOUNDARY_TOLERANCE)),
    }
    if refined is not None:
        figures["iou_after"] = float(mask_iou(refined[win], g))
        figures["bf_after"] = float(boundary_f_score(refined[win], g, BOUNDARY_TOLERANCE))
    return figures


def _refinement_shares(coarse: np.ndarray, refined: np.ndarray, boxes: np.ndarray, probs: np.ndarray | None) -> dict:
    """uncertain_share (None without probs) and changed_share over the refined region."""
    if len(boxes) == 0:
        return {"uncertain_share": 0.0 if probs is not None else None, "changed_share": 0.0}
    height, width = coarse.shape
    ux0, uy0 = int(boxes[:, 0].min()), int(boxes[:, 1].min())
    ux1, uy1 = min(int(boxes[:, 2].max()), width), min(int(boxes[:, 3].max()), height)
    total = np.zeros((uy1 - uy0, ux1 - ux0), np.float32)
    count = np.zeros_like(total)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        x1, y1 = min(int(x1), width), min(int(y1), height)
        if probs is not None:
            total[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] += probs[k][: y1 - y0, : x1 - x0]
        count[y0 - uy0:y1 - uy0, x0 - ux0:x1 - ux0] += 1.0
    region = count > 0
    n_region = int(np.count_nonzero(region))
    changed = coarse[uy0:uy1, ux0:ux1] != refined[uy0:uy1, ux0:ux1]
    figures = {"changed_share": float(np.count_nonzero(changed & region) / n_region), "uncertain_share": None}
    if probs is not None:
        mean = total[region] / count[region]
        figures["uncertain_share"] = float(np.count_nonzero(_uncertain(mean)) / n_region)
    return figures
