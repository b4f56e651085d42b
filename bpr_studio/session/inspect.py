"""Failure inspection of a Session without Qt: per-instance quality records, measured one image at a
time, kept up to date from the session's "refined" and "patches" events, ranked and filtered (core.quality).

The Inspect dock (gui/inspect_panel.py) shows this model; it drives ``measure_next`` from a timer so
the window stays responsive, and is told of re-measured instances through ``on_update``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..core.matching import match_instances
from ..core.quality import BOUNDARY_TOLERANCE, InstanceQuality, MaskShapeError, measure_instance, rank_instances
from ..core.rle import rle_crop
from .events import SessionEvent

# A mask as the model reads it: (x0, y0, (h, w) bool) inside its tight box; EMPTY for an empty mask.
EMPTY = (0, 0, np.zeros((0, 0), bool))
# Pixels around an instance's masks and patches that its figures read (core.quality's boundary F window).
WINDOW_MARGIN = int(np.ceil(BOUNDARY_TOLERANCE)) + 1


class InspectModel:
    """Quality records of a session's instances.

    ``records`` maps (image_index, instance_index) to core.quality.InstanceQuality; ``problems`` lists
    what could not be measured ("file: reason"). ``on_update(image_index, instance_index)`` is called
    after an instance was measured again because the session refined it (or re-refined a touch-up).
    """

    def __init__(self, on_update: Callable[[int, int], None] | None = None):
        self.session = None
        self.records: dict[tuple[int, int], InstanceQuality] = {}
        self.problems: list[str] = []
        self.queue: list[int] = []
        self.on_update = on_update or (lambda i, j: None)
        self._gt_last: tuple[int, tuple | None] | None = None

    def attach(self, session) -> None:
        """Measure ``session`` (None: nothing) from now on: forget every record, queue every image and
        follow the session's refinements."""
        if self.session is not None:
            self.session.events.changed.disconnect(self._session_changed)
        self.session = session
        if session is not None:
            session.events.changed.connect(self._session_changed)
        self.restart()

    def restart(self) -> None:
        """Forget every record and queue every image of the session again (after loading ground truth)."""
        self._gt_last = None
        self.records.clear()
        self.problems.clear()
        self.queue = list(range(len(self.session.images))) if self.session is not None else []

    def _session_changed(self, event: SessionEvent) -> None:
        # "patches": a re-refined touch-up (its mask became the edited one)
        if event.kind in ("refined", "patches") and event.instance is not None:
            self.remeasure(event.image, event.instance)
            self.on_update(event.image, event.instance)

    def ground_truth(self, image_index: int):
        """(RLEs, category ids, crowd flags) of an image's ground truth, or None without; the last
        image's is kept (a refinement run measures one image's instances in a row)."""
        if self._gt_last is None or self._gt_last[0] != image_index:
            gt = self.session.images[image_index].ground_truth
            found = None if gt is None else ([g.rle for g in gt], [g.category_id for g in gt],
                                             [bool(g.iscrowd) for g in gt])
            self._gt_last = (image_index, found)
        return self._gt_last[1]

    def measure_next(self) -> bool:
        """Measure the next queued image (what it decoded is released unless it is the current image);
        returns whether images remain."""
        if not self.queue:
            return False
        session = self.session
        i = self.queue.pop(0)
        image = session.images[i]
        try:
            matched = self._matches(i, range(len(image.instances)))
            found = {(i, j): self._measure(i, j, gt_index) for j, gt_index in enumerate(matched)}
        except ValueError as exc:  # DatasetError, or masks of different sizes
            self.problems.append(f"{Path(image.record.path).name}: {exc}")
            found = {}
        if i != session.current:
            image.release()
        self.records.update(found)
        return bool(self.queue)

    def remeasure(self, image_index: int, instance_index: int) -> None:
        """Measure one instance again (after it was refined)."""
        try:
            gt_index, = self._matches(image_index, [instance_index])
            self.records[(image_index, instance_index)] = self._measure(image_index, instance_index, gt_index)
        except ValueError as exc:  # DatasetError, or masks of different sizes
            name = Path(self.session.images[image_index].record.path).name
            self.problems.append(f"{name} #{instance_index}: {exc}")

    def _matches(self, image_index: int, instance_indices) -> list[int | None]:
        """The ground-truth index each instance's coarse mask matches (core.matching, on RLE), None
        where none does or the image has no ground truth. MaskShapeError for an instance or a
        ground-truth mask of another size than the first instance."""
        instances = [self.session.images[image_index].instances[j] for j in instance_indices]
        gt = self.ground_truth(image_index)
        if gt is None or not instances:
            return [None] * len(instances)
        height, width = instances[0].source.size
        sizes = [(f"instance {j}", inst.source.size) for j, inst in zip(instance_indices, instances)]
        for name, (h, w) in sizes + [(f"ground-truth mask {m}", rle["size"]) for m, rle in enumerate(gt[0])]:
            if (int(h), int(w)) != (height, width):
                raise MaskShapeError(f"{name} is {w}x{h} pixels, expected {width}x{height}")
        index, _ = match_instances([inst.rle("coarse") for inst in instances],
                                   [inst.category_id for inst in instances], *gt)
        return [int(k) if k >= 0 else None for k in index]

    def _measure(self, image_index: int, instance_index: int, gt_index: int | None) -> InstanceQuality:
        """core.quality.measure_instance of one instance, on the window of the image its figures read
        (its masks' boxes and patch boxes, grown by WINDOW_MARGIN): the same figures as on the whole
        image, without decoding whole masks (an 8000 x 6000 image's took 150 ms each)."""
        image = self.session.images[image_index]
        inst = image.instances[instance_index]
        gt = self.ground_truth(image_index)
        crops = {"coarse": inst.crop("coarse") or EMPTY,
                 "refined": (inst.crop("refined") or EMPTY) if inst.has("refined") else None,
                 "gt": (rle_crop(gt[0][gt_index]) or EMPTY) if gt_index is not None else None}
        boxes = inst.boxes if crops["refined"] is not None else None
        x0, y0, x1, y1 = _window(inst.source.size, [c for c in crops.values() if c is not None], boxes)
        arrays = {name: None if crop is None else _pasted(crop, (x0, y0, x1, y1)) for name, crop in crops.items()}
        return measure_instance(
            arrays["coarse"], arrays["refined"], None if boxes is None else boxes - np.array([x0, y0, x0, y0]),
            inst.probs, arrays["gt"], image_index=image_index, instance_index=instance_index,
            category_id=inst.category_id, image_name=Path(image.record.path).name, gt_index=gt_index,
            has_ground_truth=gt is not None)

    def has_content(self) -> bool:
        """Whether any instance has ground-truth figures or a refinement to show."""
        return any(q.iou_before is not None or q.changed_share is not None for q in self.records.values())

    def summary(self) -> str:
        """One or two lines: counts of instances, refined, measured and worse; the first problem."""
        records = list(self.records.values())
        worse = sum(1 for q in records if q.iou_change is not None and q.iou_change < 0)
        measured = sum(1 for q in records if q.iou_change is not None)
        refined = sum(1 for q in records if q.changed_share is not None)
        text = f"{len(records)} instances, {refined} refined"
        if any(q.iou_before is not None for q in records):
            text += f", {measured} with IoU change, {worse} worse"
        else:
            text += "; no ground truth, so no IoU change"
        if self.problems:
            text += f"\n{len(self.problems)} not measured: {self.problems[0]}"
        return text

    def ranking(self, sort: str, keep: str) -> list[InstanceQuality]:
        """The records ordered by ``sort`` and filtered by ``keep`` (names of core.quality.SORTS, FILTERS)."""
        return rank_instances(list(self.records.values()), sort, keep)

    def instance_order(self, image_index: int, sort: str = "worst_change", keep: str = "all") -> list[int]:
        """Instance indices of one image that pass filter ``keep``, ordered by ``sort``. Instances not
        measured (yet) pass only the "all" filter and come last, in index order."""
        n = len(self.session.images[image_index].instances) if self.session is not None else 0
        ranked = [q.instance_index for q in rank_instances(
            [self.records[(image_index, j)] for j in range(n) if (image_index, j) in self.records], sort, keep)]
        if keep == "all":
            ranked += [j for j in range(n) if (image_index, j) not in self.records]
        return ranked


def _window(shape: tuple[int, int], crops: list, boxes: np.ndarray | None) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the union of the non-empty crops (x0, y0, (h, w) bool) and of the (K, 4)
    boxes (None: none) inside the (H, W) image, grown by WINDOW_MARGIN and clipped to the image; a
    pixel in the corner when all are empty."""
    height, width = shape
    spans = [(cx, cy, cx + m.shape[1], cy + m.shape[0]) for cx, cy, m in crops if m.size]
    if boxes is not None and len(boxes):
        spans.append((int(boxes[:, 0].min()), int(boxes[:, 1].min()),
                      min(int(boxes[:, 2].max()), width), min(int(boxes[:, 3].max()), height)))
    if not spans:
        return 0, 0, min(1, width), min(1, height)
    return (max(min(b[0] for b in spans) - WINDOW_MARGIN, 0), max(min(b[1] for b in spans) - WINDOW_MARGIN, 0),
            min(max(b[2] for b in spans) + WINDOW_MARGIN, width), min(max(b[3] for b in spans) + WINDOW_MARGIN, height))


def _pasted(crop, window: tuple[int, int, int, int]) -> np.ndarray:
    """The (y1 - y0, x1 - x0) bool array of ``window`` with ``crop`` (x0, y0, (h, w) bool) in place."""
    x0, y0, x1, y1 = window
    out = np.zeros((y1 - y0, x1 - x0), bool)
    cx, cy, mask = crop
    out[cy - y0:cy - y0 + mask.shape[0], cx - x0:cx - x0 + mask.shape[1]] = mask
    return out
