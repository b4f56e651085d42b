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
from ..core.quality import BOUNDARY_TOLERANCE, InstanceQuality, check_shapes, measure_instance, rank_instances
from ..core.rle import rle_crop
from .events import SessionEvent
from .model import crop_box, crop_window, grow_box, union_box

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
        check_shapes(instances[0].source.size, {**{f"instance {j}": inst.source.size
                                                   for j, inst in zip(instance_indices, instances)},
                                                **{f"ground-truth mask {m}": rle["size"] for m, rle in enumerate(gt[0])}})
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
        shape = inst.source.size
        refined = inst.has("refined")
        # crops (x0, y0, (h, w) bool), None when empty; the refined mask and the ground truth only where present
        crops = {"coarse": inst.crop("coarse"), "refined": inst.crop("refined") if refined else None,
                 "gt": rle_crop(gt[0][gt_index]) if gt_index is not None else None}
        boxes = inst.boxes if refined else None
        patches = None if boxes is None or not len(boxes) else (
            int(boxes[:, 0].min()), int(boxes[:, 1].min()),
            min(int(boxes[:, 2].max()), shape[1]), min(int(boxes[:, 3].max()), shape[0]))
        window = grow_box(union_box(*map(crop_box, crops.values()), patches) or (0, 0, 1, 1), WINDOW_MARGIN, shape)
        x0, y0 = window[:2]
        return measure_instance(
            crop_window(crops["coarse"], window), crop_window(crops["refined"], window) if refined else None,
            None if boxes is None else boxes - np.array([x0, y0, x0, y0]), inst.probs,
            crop_window(crops["gt"], window) if gt_index is not None else None, image_index=image_index,
            instance_index=instance_index, category_id=inst.category_id, image_name=Path(image.record.path).name,
            gt_index=gt_index, has_ground_truth=gt is not None)

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
