"""Evaluation of instance predictions: COCO mask AP (pycocotools), AF, per-instance IoU, and the boundary oracle.

Inputs are per-image lists of instance-like objects: anything with ``rle`` (a COCO RLE dict of the
(H, W) mask), ``category_id`` and, for ground truth, ``iscrowd``, for predictions ``score``
(``bpr_studio.io.dataset.Instance`` fits).

- AP, AP50, AP75, AP_S, AP_M, AP_L: pycocotools' ``COCOeval`` with ``iouType="segm"`` (-1 where a
  size range holds no ground truth).
- AF: at each IoU threshold 0.50:0.05:0.95, the true-positive pairs that COCOeval matched (area
  range "all", 100 detections) are scored with the boundary F-score at a 1-pixel tolerance; the
  mean over those pairs (0 when there are none) is averaged over the ten thresholds.
- mIoU: for every non-crowd ground-truth instance, the IoU of its best same-category prediction (0
  when there is none), averaged. These per-instance IoUs also compare two prediction sets
  (share of instances made worse or better by more than a margin).
- Leaks, over the same best pairs (instances without a prediction left out): the signed area error
  ``(area(pred) - area(gt)) / area(gt)`` averaged (positive = masks too large), and the share of
  the predictions' boundary pixels more than 5 px from the ground truth's boundary (pooled).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .matching import match_instances
from .metrics import boundary_f_score, far_boundary_pixels
from .rle import area, bbox, compressed, decode_rle

FAR_DISTANCE = 5.0  # px: a predicted boundary pixel farther than this from the true boundary is "far"


@dataclass
class Scores:
    """Scores of one prediction set. AP values are fractions (COCO's, -1 = no ground truth in
    range); af, miou in [0, 1]; area_error: mean signed relative area error of the best pairs
    (fraction, positive = too large); far: share of their predicted boundary pixels more than
    FAR_DISTANCE px from the true boundary; ious: (N,) float64 best IoU per non-crowd ground-truth
    instance, in image then instance order; area_errors: (M,) float64 signed relative area error of
    each instance that has a prediction."""

    ap: float
    ap50: float
    ap75: float
    ap_s: float
    ap_m: float
    ap_l: float
    af: float
    miou: float
    area_error: float
    far: float
    ious: np.ndarray = field(repr=False)
    area_errors: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {k: float(getattr(self, k))
                for k in ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l", "af", "miou", "area_error", "far")}


def _coco_objects(sizes, ground_truth, predictions) -> tuple[COCO, COCO | None, dict, dict]:
    """In-memory pycocotools COCO objects for ground truth and predictions (None when there are no
    predictions), plus {annotation id: rle} of each."""
    images, anns, dets, cats = [], [], [], set()
    gt_rles, dt_rles = {}, {}
    for image_id, ((h, w), gts, preds) in enumerate(zip(sizes, ground_truth, predictions), start=1):
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        for inst in gts:
            rle = compressed(inst.rle)
            ann_id = len(anns) + 1
            gt_rles[ann_id] = rle
            cats.add(int(inst.category_id))
            anns.append({"id": ann_id, "image_id": image_id, "category_id": int(inst.category_id),
                         "segmentation": rle, "area": float(area(rle)), "bbox": bbox(rle),
                         "iscrowd": int(bool(inst.iscrowd))})
        for inst in preds:
            rle = compressed(inst.rle)
            dets.append({"image_id": image_id, "category_id": int(inst.category_id), "segmentation": rle,
                         "score": float(inst.score if inst.score is not None else 1.0)})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in sorted(cats)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else None
    if dt is not None:
        dt_rles = {d["id"]: d["segmentation"] for d in dt.dataset["annotations"]}
    return gt, dt, gt_rles, dt_rles


def best_matches(ground_truth, predictions) -> list[tuple[dict, dict | None, float]]:
    """For each non-crowd ground-truth instance (image then instance order): (its RLE, the RLE of its
    best same-category prediction in the same image or None, their IoU or 0)."""
    out = []
    for gts, preds in zip(ground_truth, predictions):
        gt_rles = [compressed(g.rle) for g in gts if not g.iscrowd]
        pred_rles = [compressed(p.rle) for p in preds]
        index, iou = match_instances(gt_rles, [g.category_id for g in gts if not g.iscrowd], pred_rles,
                                     [p.category_id for p in preds], require_overlap=False)
        out += [(g, pred_rles[j] if j >= 0 else None, float(v)) for g, j, v in zip(gt_rles, index, iou)]
    return out


def instance_ious(ground_truth, predictions) -> np.ndarray:
    """(N,) float64: for each non-crowd ground-truth instance (image then instance order), the IoU
    of its best same-category prediction in the same image, 0 when there is none."""
    return np.asarray([iou for _, _, iou in best_matches(ground_truth, predictions)], np.float64)


def leak_errors(matches: list[tuple[dict, dict | None, float]],
                distance: float = FAR_DISTANCE) -> tuple[np.ndarray, float]:
    """(signed relative area error (M,) float64 of every matched pair, share of the predictions'
    boundary pixels more than ``distance`` px from the ground truth's boundary, pooled over the pairs)."""
    errors, far, total = [], 0, 0
    for gt_rle, pred_rle, _ in matches:
        if pred_rle is None:
            continue
        gt_area = float(area(gt_rle))
        errors.append((float(area(pred_rle)) - gt_area) / max(gt_area, 1.0))
        n_far, n = far_boundary_pixels(decode_rle(pred_rle), decode_rle(gt_rle), distance)
        far, total = far + n_far, total + n
    return np.asarray(errors, np.float64), far / total if total else 0.0


def evaluate(sizes: list[tuple[int, int]], ground_truth: list[list], predictions: list[list],
             tolerance: float = 1.0) -> Scores:
    """Score predictions against ground truth.

    sizes: (H, W) of every image. ground_truth, predictions: per image, a list of instance-like
    objects (see the module docstring). tolerance: boundary F-score tolerance in pixels.
    """
    if not (len(sizes) == len(ground_truth) == len(predictions)):
        raise ValueError(f"got {len(sizes)} image sizes, {len(ground_truth)} ground-truth and "
                         f"{len(predictions)} prediction lists; expected one of each per image")
    matches = best_matches(ground_truth, predictions)
    ious = np.asarray([iou for _, _, iou in matches], np.float64)
    miou = float(ious.mean()) if ious.size else 0.0
    area_errors, far = leak_errors(matches)
    area_error = float(area_errors.mean()) if area_errors.size else 0.0
    gt, dt, gt_rles, dt_rles = _coco_objects(sizes, ground_truth, predictions)
    if dt is None or not gt_rles:
        return Scores(0.0, 0.0, 0.0, -1.0, -1.0, -1.0, 0.0, miou, area_error, far, ious, area_errors)
    ev = COCOeval(gt, dt, iouType="segm")
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    af = _average_f(ev, gt_rles, dt_rles, tolerance)
    s = [float(v) for v in ev.stats[:6]]
    return Scores(s[0], s[1], s[2], s[3], s[4], s[5], af, miou, area_error, far, ious, area_errors)


def _average_f(ev: COCOeval, gt_rles: dict, dt_rles: dict, tolerance: float) -> float:
    """AF: mean over IoU thresholds of the mean boundary F-score of that threshold's true positives."""
    thresholds = ev.params.iouThrs
    all_range = ev.params.areaRng[ev.params.areaRngLbl.index("all")]
    cache: dict[tuple[int, int], float] = {}
    per_threshold = [[] for _ in thresholds]
    for e in ev.evalImgs:
        if e is None or list(e["aRng"]) != list(all_range):
            continue
        for t in range(len(thresholds)):
            for d, dt_id in enumerate(e["dtIds"]):
                gt_id = int(e["dtMatches"][t, d])
                if gt_id == 0 or e["dtIgnore"][t, d]:
                    continue
                key = (int(dt_id), gt_id)
                if key not in cache:
                    cache[key] = boundary_f_score(decode_rle(dt_rles[key[0]]), decode_rle(gt_rles[gt_id]), tolerance)
                per_threshold[t].append(cache[key])
    return float(np.mean([np.mean(v) if v else 0.0 for v in per_threshold]))


def share_changed(before: np.ndarray, after: np.ndarray, margin: float = 0.01) -> tuple[float, float]:
    """(share worse, share better): fractions of instances whose IoU fell / rose by more than
    ``margin`` (0.01 = one IoU point). before, after: (N,) per-instance IoUs of the same instances."""
    if before.shape != after.shape:
        raise ValueError(f"per-instance IoUs of {before.shape} and {after.shape}; expected the same instances")
    if before.size == 0:
        return 0.0, 0.0
    return float(np.mean(after < before - margin)), float(np.mean(after > before + margin))


def oracle_mask(pred: np.ndarray, gt: np.ndarray, dist: float) -> np.ndarray:
    """The boundary oracle of BPR's Table 1: predicted pixels near the predicted boundary take the
    ground truth's value.

    pred, gt: (H, W) bool. dist: distance in pixels. A foreground pixel is near the boundary when a
    background pixel lies within ``dist`` (Euclidean, between pixel centres), and the other way
    round, so ``dist=1`` replaces the one-pixel bands on both sides of the boundary. The image
    border is not a boundary. Returns (H, W) bool.
    """
    out = pred.copy()
    rows = np.flatnonzero(pred.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(pred.any(axis=0))
    m = int(np.ceil(dist)) + 1
    height, width = pred.shape
    win = (slice(max(rows[0] - m, 0), min(rows[-1] + 1 + m, height)),
           slice(max(cols[0] - m, 0), min(cols[-1] + 1 + m, width)))
    p = pred[win].astype(np.uint8)
    # distance of every pixel to the nearest pixel of the other value; a constant window has none
    to_bg = cv2.distanceTransform(p, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) if (p == 0).any() else None
    to_fg = cv2.distanceTransform(1 - p, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) if p.any() else None
    band = np.zeros(p.shape, bool)
    if to_bg is not None:
        band |= (p == 1) & (to_bg <= dist)
    if to_fg is not None:
        band |= (p == 0) & (to_fg <= dist)
    out[win][band] = gt[win][band]
    return out
