"""The annotation session: images, their instances (coarse, refined and edited masks, review status), undo, autosave.

Everything a reviewer does goes through :class:`Session` methods, which change the state, push an
undo step, append the change to the session journal and emit an event. No Qt: a test or a script
drives it directly; the window listens to ``session.events``.

Masks of images other than the current one stay COCO RLE in memory (reading them decodes each
time); the current image's arrays are decoded on first use and kept until
:meth:`Session.select_image` moves on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..core.boundary import mask_bbox
from ..core.rle import decode_rle, encode_rle, rle_crop, xor_area
from ..io.dataset import Dataset, ImageRecord, Instance
from ..io.errors import DatasetError
from ..io.images import read_image
from .events import SessionEvent, SessionEvents
from .export import DatasetSource, ExportReport, export_dataset, files_replaced
from .history import Change, History, MaskDiff
from .paint import polygon_window, stroke_window
from .store import SessionStore

STATUSES = ("unreviewed", "accepted", "rejected", "edited")
UNREVIEWED_CHOICES = ("coarse", "refined", "omit")
"""What an export does with instances nobody reviewed: keep the coarse mask, take the refined one, or leave them out."""


class InstanceState:
    """One instance under review.

    source: the io Instance it came from (its mask is the coarse mask). status: one of STATUSES.
    boxes (K, 4) int32 and probs (K, P, P) float16: the patches of the last refinement in this run
    (boxes survive a reopen, probs do not), or None.
    Mask properties return (H, W) bool arrays that must not be modified; None when absent.
    """

    def __init__(self, source: Instance) -> None:
        self.source = source
        self.status = "unreviewed"
        self.boxes: np.ndarray | None = None
        self.probs: np.ndarray | None = None
        self._arrays: dict[str, np.ndarray] = {}
        self._rles: dict[str, dict | None] = {"refined": None, "edited": None}
        self._crops: dict[str, tuple | None] = {}
        self._changed: int | None = None
        self.keep_arrays = False  # set by the Session for the current image: decoded masks are kept

    @property
    def category_id(self) -> int:
        return self.source.category_id

    @property
    def score(self) -> float | None:
        return self.source.score

    @property
    def coarse(self) -> np.ndarray:
        return self._mask("coarse")

    @property
    def refined(self) -> np.ndarray | None:
        return self._mask("refined")

    @property
    def edited(self) -> np.ndarray | None:
        return self._mask("edited")

    @property
    def final_name(self) -> str:
        """Which mask is final: "coarse" when rejected or never refined, else "edited" if there is one, else "refined"."""
        if self.status == "rejected":
            return "coarse"
        if self.has("edited"):
            return "edited"
        return "refined" if self.has("refined") else "coarse"

    @property
    def final(self) -> np.ndarray:
        """(H, W) bool: the mask an export takes for a reviewed instance."""
        return self._mask(self.final_name)

    def has(self, name: str) -> bool:
        """Whether the mask ``name`` ("coarse", "refined", "edited") exists, without decoding it."""
        return name == "coarse" or name in self._arrays or self._rles[name] is not None

    def rle(self, name: str) -> dict | None:
        """COCO RLE of mask ``name``, encoded (and kept) if only the array is current."""
        if name == "coarse":
            return self.source.rle
        if self._rles[name] is None and name in self._arrays:
            self._rles[name] = encode_rle(self._arrays[name])
        return self._rles[name]

    @property
    def changed_pixels(self) -> int:
        """Pixels where the final mask differs from the coarse one."""
        if self._changed is None:
            name = self.final_name
            if name == "coarse":
                self._changed = 0
            elif self._rles[name] is not None:
                self._changed = xor_area(self.source.rle, self._rles[name])
            else:
                self._changed = _crop_xor_count(self.crop("coarse"), self.crop(name))
        return self._changed

    def crop(self, name: str) -> tuple[int, int, np.ndarray] | None:
        """(x0, y0, (h, w) bool) the mask ``name`` inside its tight box, or None when absent or empty.

        Cheaper to keep than the whole mask: for an image that is not being edited only these
        crops stay in memory (the whole array is decoded once and dropped). The crop of the mask
        being edited is a view of it that strokes keep up to date (its box grows and shrinks with
        them, see :meth:`_flip`), so reading it after a stroke costs nothing.
        """
        if name not in self._crops:
            if name in self._arrays:
                full = self._arrays[name]
                box = mask_bbox(full)
                cropped = None if box is None else (box[0], box[1], full[box[1]:box[3], box[0]:box[2]])
            else:
                rle = self.rle(name)
                cropped = None if rle is None else rle_crop(rle)
            if cropped is not None:
                cropped[2].flags.writeable = False
            self._crops[name] = cropped
        return self._crops[name]

    def release(self) -> None:
        """Keep only RLE (encoding the masks changed since), free the arrays."""
        for name in ("refined", "edited"):
            self.rle(name)
        self._arrays.clear()
        self._crops.clear()

    def _mask(self, name: str) -> np.ndarray | None:
        """The array of mask ``name``, decoded from RLE when needed (and kept when ``keep_arrays``)."""
        if name in self._arrays:
            return self._arrays[name]
        rle = self.rle(name)
        if rle is None:
            return None
        array = decode_rle(rle)
        array.flags.writeable = False
        if self.keep_arrays:
            self._arrays[name] = array
        return array

    def _set(self, name: str, mask: np.ndarray | None, rle: dict | None = None) -> None:
        """Replace mask ``name`` (None removes it); the (H, W) bool array is taken over, not copied.
        ``rle`` is its encoding when the caller has it."""
        self._arrays.pop(name, None)
        self._crops.pop(name, None)
        self._rles[name] = rle
        if mask is not None:
            mask.flags.writeable = False
            self._arrays[name] = mask
        self._changed = None

    def _flip(self, diff: MaskDiff) -> int | None:
        """Apply a diff to the edited mask in place. Works inside the diff's box (and, when pixels are
        removed on the edge of the mask's box, inside that box): the crop's box is kept up to date,
        never found again by a pass over the whole image.

        Returns how many more pixels the edited mask now differs from the coarse one by (negative:
        fewer), counted inside the diff's box; None when that count was not known.
        """
        edited = self._mask("edited")
        x0, y0, x1, y1 = diff.bbox
        flipped = diff.xor
        delta = None
        if self._changed is not None:
            before = edited[y0:y1, x0:x1] ^ crop_window(self.crop("coarse"), diff.bbox)
            delta = int(np.count_nonzero(flipped)) - 2 * int(np.count_nonzero(flipped & before))
        old = self._crops.get("edited", False)  # False: not known yet
        edited.flags.writeable = True
        edited[y0:y1, x0:x1] ^= flipped
        edited.flags.writeable = False
        self._arrays["edited"] = edited
        self._rles["edited"] = None
        if old is False:
            self._crops.pop("edited", None)
        else:
            box = _box_after_flip(edited, crop_box(old), diff.bbox, flipped)
            self._crops["edited"] = None if box is None else \
                (box[0], box[1], edited[box[1]:box[3], box[0]:box[2]])  # a read-only view
        return delta


def crop_box(crop) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a crop (x0, y0, (h, w) bool), or None."""
    if crop is None:
        return None
    x0, y0, mask = crop
    return x0, y0, x0 + mask.shape[1], y0 + mask.shape[0]


def union_box(*boxes) -> tuple[int, int, int, int] | None:
    """The box around all given boxes (None entries ignored), or None."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def grow_box(box, margin: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) grown by ``margin`` pixels on every side, clipped to an image of ``shape`` (H, W)."""
    x0, y0, x1, y1 = box
    return max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, shape[1]), min(y1 + margin, shape[0])


def crop_window(crop, box: tuple[int, int, int, int]) -> np.ndarray:
    """(y1 - y0, x1 - x0) bool: a crop (x0, y0, (h, w) bool) or None seen through the image window ``box``
    (which may reach beyond the crop, or the image)."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0), bool)
    if crop is not None:
        cx, cy, mask = crop
        ix0, iy0 = max(x0, cx), max(y0, cy)
        ix1, iy1 = min(x1, cx + mask.shape[1]), min(y1, cy + mask.shape[0])
        if ix0 < ix1 and iy0 < iy1:
            out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = mask[iy0 - cy:iy1 - cy, ix0 - cx:ix1 - cx]
    return out


def _box_after_flip(mask: np.ndarray, box, window, flipped: np.ndarray):
    """The tight box of ``mask`` (H, W) bool after the pixels ``flipped`` (inside ``window``) changed,
    given its tight box before (None: it was empty). Adding only: the old box and the new pixels' box.
    Otherwise the box stays unless the change reaches its edge rows or columns; then it is found
    again inside the old box and the window, not the whole image."""
    x0, y0, x1, y1 = window
    inside = mask[y0:y1, x0:x1]
    if box is None or not np.any(flipped & ~inside):  # nothing was removed
        added = mask_bbox(inside)
        return union_box(box, None if added is None else (x0 + added[0], y0 + added[1], x0 + added[2], y0 + added[3]))
    if box[0] < x0 and x1 < box[2] and box[1] < y0 and y1 < box[3]:
        return box  # the pixels on every edge of the box are untouched
    bx0, by0, bx1, by1 = union_box(box, window)
    found = mask_bbox(mask[by0:by1, bx0:bx1])
    return None if found is None else (bx0 + found[0], by0 + found[1], bx0 + found[2], by0 + found[3])


def _crop_xor_count(a: tuple | None, b: tuple | None) -> int:
    """Pixels in exactly one of two crops (x0, y0, (h, w) bool) or None."""
    if a is None or b is None:
        return int(sum(c[2].sum() for c in (a, b) if c is not None))
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1 = max(a[0] + a[2].shape[1], b[0] + b[2].shape[1])
    y1 = max(a[1] + a[2].shape[0], b[1] + b[2].shape[0])
    canvas = np.zeros((y1 - y0, x1 - x0), bool)
    for cx, cy, crop in (a, b):
        canvas[cy - y0:cy - y0 + crop.shape[0], cx - x0:cx - x0 + crop.shape[1]] ^= crop
    return int(np.count_nonzero(canvas))


def _change_window(change: Change) -> tuple[int, int, int, int] | None:
    """Where a change moved the final mask (the box of its diff), or None when it may have changed
    anywhere: the edited mask created or dropped, or a rejection (the final mask is the coarse one)
    made or undone."""
    if change.diff is None or change.creates or change.drops or \
            (change.status_before == "rejected") != (change.status_after == "rejected"):
        return None
    return change.diff.bbox


def _whole_mask_diff(mask: np.ndarray) -> MaskDiff | None:
    """The diff that turns an empty mask into ``mask`` (H, W) bool (None when it is empty too)."""
    box = mask_bbox(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return MaskDiff.from_xor(mask[y0:y1, x0:x1], (x0, y0))


class ImageState:
    """One image of the session: its record, instances, ground truth and undo history.

    ground_truth: list[Instance] when ground truth was loaded (possibly empty), else None.
    error: why the image could not be read (set by :meth:`read_image`), or None.
    """

    def __init__(self, index: int, record: ImageRecord, ground_truth: list[Instance] | None) -> None:
        self.index = index
        self.record = record
        self.ground_truth = ground_truth
        self.instances = [InstanceState(inst) for inst in record.instances]
        self.history = History()
        self.error: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.record.path)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels, as the dataset says."""
        return self.record.height, self.record.width

    def read_image(self) -> np.ndarray:
        """The pixels, (H, W, 3) uint8 RGB. Raises DatasetError naming the file when it is missing,
        corrupt, not the size the dataset says, or when an instance mask has another size; the
        message is also kept in :attr:`error`."""
        try:
            image = read_image(self.path, expected_size=(self.record.width, self.record.height))
            for j, inst in enumerate(self.instances):
                if tuple(inst.source.size) != self.shape:
                    h, w = inst.source.size
                    raise DatasetError(f"{self.path}: mask of instance {j} is {w}x{h} pixels, "
                                       f"expected {self.record.width}x{self.record.height}")
        except DatasetError as exc:
            self.error = str(exc)
            raise
        self.error = None
        return image

    def review_counts(self) -> dict[str, int]:
        """{status: number of instances} for every status in STATUSES."""
        counts = dict.fromkeys(STATUSES, 0)
        for inst in self.instances:
            counts[inst.status] += 1
        return counts

    def keep_arrays(self, keep: bool) -> None:
        """Whether decoded masks stay in memory (True for the image being worked on)."""
        for inst in self.instances:
            inst.keep_arrays = keep

    def release(self) -> None:
        """Back to RLE only: encode what changed, free the arrays."""
        self.keep_arrays(False)
        for inst in self.instances:
            inst.release()


class Session:
    """The review state of a dataset, saved to ``path`` after every change (None: not saved).

    dataset: the images and their instances to review (predictions or annotations).
    ground_truth: a Dataset whose images are matched to ``dataset``'s by file name, or None.
    Reopening with the same ``path`` restores statuses, refined and edited masks; a session file
    that does not belong to the dataset is moved aside (``restore_message`` says so).
    source: where the dataset was read from (set by :func:`open_session`), saved in the session file
    so a command can reopen the session from its file alone.
    weights: the refinement weights the session uses (a path, or a shipped file by its name: fast,
        precise, paper; core.config.weights_name), None for the shipped default.
    """

    def __init__(self, dataset: Dataset, path: str | Path | None = None,
                 ground_truth: Dataset | None = None, compact_every: int = 200,
                 source: DatasetSource | None = None) -> None:
        self.dataset = dataset
        self.source = source
        self.weights: str | None = None
        self.categories = dict(dataset.categories)
        gt_by_name = None
        if ground_truth is not None:
            gt_by_name = {Path(rec.path).name: rec.instances for rec in ground_truth.images}
            for cid, name in ground_truth.categories.items():
                self.categories.setdefault(cid, name)
        self.images = [ImageState(i, rec, None if gt_by_name is None else gt_by_name.get(Path(rec.path).name, []))
                       for i, rec in enumerate(dataset.images)]
        self.events = SessionEvents()
        self.current = 0
        self.restore_message: str | None = None
        self.restored = False  # whether an earlier session was restored
        self.load_problems: list[tuple] = []  # (path, message) of files left out when it was opened
        self.store = SessionStore(path, compact_every) if path is not None else None
        if self.store is not None:
            self._restore()
        if self.images:
            self.images[self.current].keep_arrays(True)

    # ---- review --------------------------------------------------------------------------------

    def set_status(self, i: int, j: int, status: str) -> bool:
        """Set the review status of instance j of image i (undoable). Returns False if it already had it."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        inst = self.images[i].instances[j]
        if inst.status == status:
            return False
        self._commit(i, [Change(j, inst.status, status)])
        return True

    def accept(self, i: int, j: int) -> bool:
        """Accept the final mask (refined, or edited) of an instance."""
        return self.set_status(i, j, "accepted")

    def reject(self, i: int, j: int) -> bool:
        """Reject the refinement: the coarse mask is final."""
        return self.set_status(i, j, "rejected")

    def accept_all_refined(self, i: int) -> int:
        """Accept every unreviewed instance of image i that has a refined mask, as one undo step. Returns how many."""
        changes = [Change(j, inst.status, "accepted") for j, inst in enumerate(self.images[i].instances)
                   if inst.status == "unreviewed" and inst.has("refined")]
        if changes:
            self._commit(i, changes)
        return len(changes)

    def next_unreviewed(self, i: int, j: int | None, step: int = 1) -> tuple[int, int] | None:
        """The next (step=1) or previous (step=-1) unreviewed instance after instance j of image i,
        going on to the following images and wrapping around. None when every instance is reviewed."""
        order = []
        n = len(self.images)
        for k in range(n + 1):
            ii = (i + step * k) % n
            count = len(self.images[ii].instances)
            js = range(count) if step > 0 else range(count - 1, -1, -1)
            order.extend((ii, jj) for jj in js)
        start = 0
        if j is not None and (i, j) in order:
            start = order.index((i, j)) + 1
        for ii, jj in order[start:]:
            if self.images[ii].instances[jj].status == "unreviewed":
                return ii, jj
        return None

    def review_counts(self) -> dict[str, int]:
        """{status: number of instances} over the whole dataset."""
        total = dict.fromkeys(STATUSES, 0)
        for image in self.images:
            for status, count in image.review_counts().items():
                total[status] += count
        return total

    # ---- touch-up ------------------------------------------------------------------------------

    def paint(self, i: int, j: int, points, radius: float, erase: bool = False) -> bool:
        """Brush (or erase, ``erase=True``) a stroke into instance j's mask.

        points: (N, 2) float (x, y) image pixels along the stroke; radius: brush radius in pixels.
        Pixels outside the image are ignored. The edit starts from the final mask. Returns whether
        any pixel changed (then it is one undo step).
        """
        window = stroke_window(self.images[i].shape, points, radius)
        return window is not None and self._edit(i, j, *window, erase=erase)

    def fill_polygon(self, i: int, j: int, points, subtract: bool = False) -> bool:
        """Add (or subtract) the inside of a polygon (N, 2) float (x, y) to instance j's mask. Returns whether it changed."""
        window = polygon_window(self.images[i].shape, points)
        return window is not None and self._edit(i, j, *window, erase=subtract)

    def set_edited_mask(self, i: int, j: int, mask: np.ndarray) -> bool:
        """Make ``mask`` (H, W) bool the edited mask of instance j (e.g. a re-refined touch-up); undoable."""
        inst = self.images[i].instances[j]
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.images[i].shape:
            raise ValueError(f"mask is {mask.shape}, image {self.images[i].path.name} is {self.images[i].shape}")
        if inst.has("edited"):
            diff = MaskDiff.between(inst.edited, mask)
            change = Change(j, inst.status, "edited", diff)
            if diff is None and inst.status == "edited":
                return False
        else:
            if not np.any(inst.final ^ mask):
                return False
            change = Change(j, inst.status, "edited", _whole_mask_diff(mask), creates=True)
        self._commit(i, [change])
        return True

    def _edit(self, i: int, j: int, window, covered: np.ndarray, erase: bool) -> bool:
        """Paint (or erase) ``covered`` (h, w) bool at ``window`` (x0, y0, x1, y1) into the final mask of instance j.

        Work stays inside the window (the first edit of an instance: inside the mask's box), so a
        stroke on an 8000 px image costs what the stroke covers, not the image. The "mask" event
        carries the window: the final mask changed nowhere else.
        """
        inst = self.images[i].instances[j]
        x0, y0, x1, y1 = window
        name = inst.final_name
        if name == "edited":
            before = inst.edited[y0:y1, x0:x1]
            after = before & ~covered if erase else before | covered
            if not np.any(before ^ after):
                return False
            change = Change(j, inst.status, "edited", MaskDiff.from_xor(before ^ after, (x0, y0)))
            self._commit(i, [change], window=window)
            return True
        # the first edit: the edited mask starts empty, the diff holds the whole new mask
        crop = inst.crop(name)
        box = union_box(crop_box(crop), window)
        bx0, by0, _, _ = box
        region = crop_window(crop, box)
        before = region[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
        after = before & ~covered if erase else before | covered
        if not np.any(before ^ after):
            return False
        before[...] = after
        if inst.has("edited"):  # rejected with an old edit: replace the edit by the touched-up coarse mask
            old = inst.crop("edited")
            both = union_box(crop_box(old), box)
            flipped = crop_window(old, both) ^ crop_window((bx0, by0, region), both)
            diff = MaskDiff.from_xor(flipped, both[:2])
            if diff is None:  # the old edit is the touched-up coarse mask already
                change = Change(j, inst.status, "edited")
            else:
                change = Change(j, inst.status, "edited", diff)
            self._commit(i, [change])  # the edited mask changed beyond the window
        else:
            change = Change(j, inst.status, "edited", MaskDiff.from_xor(region, (bx0, by0)), creates=True)
            self._commit(i, [change], window=window)
        return True

    # ---- undo ----------------------------------------------------------------------------------

    def can_undo(self, i: int) -> bool:
        return self.images[i].history.can_undo

    def can_redo(self, i: int) -> bool:
        return self.images[i].history.can_redo

    def undo(self, i: int) -> bool:
        """Revert the last step on image i. Returns False when there is nothing to undo."""
        step = self.images[i].history.pop_undo()
        if step is None:
            return False
        self._commit(i, [c.inverse() for c in reversed(step)], record=False)
        return True

    def redo(self, i: int) -> bool:
        """Apply the last undone step on image i again. Returns False when there is nothing to redo."""
        step = self.images[i].history.pop_redo()
        if step is None:
            return False
        self._commit(i, list(step), record=False)
        return True

    # ---- refinement results --------------------------------------------------------------------

    def set_refined(self, i: int, j: int, mask: np.ndarray, boxes: np.ndarray | None = None,
                    probs: np.ndarray | None = None, rle: dict | None = None) -> None:
        """Store a refinement result for instance j of image i (not an undo step).

        mask: (H, W) bool, taken over (not copied) when it is a writeable bool array; kept as an
        array only for the current image. boxes (K, 4) int32, probs (K, P, P) float foreground
        probabilities (kept as float16): its patches. rle: the mask's COCO RLE when the caller
        already has it. An accepted instance without an edit whose refined mask changes goes back
        to unreviewed.
        """
        image = self.images[i]
        mask = np.array(mask, dtype=bool, copy=mask.dtype != bool or not mask.flags.writeable)
        if mask.shape != image.shape:
            raise ValueError(f"refined mask is {mask.shape}, image {image.path.name} is {image.shape}")
        inst = image.instances[j]
        if inst.status == "accepted" and not inst.has("edited") and inst.has("refined") \
                and np.any(inst.refined ^ mask):
            inst.status = "unreviewed"
        rle = rle if rle is not None else encode_rle(mask)
        inst._set("refined", mask if i == self.current else None, rle)  # other images keep RLE only
        inst.boxes = None if boxes is None else np.asarray(boxes, np.int32)
        inst.probs = None if probs is None else np.asarray(probs, np.float16)  # half the memory
        self._journal({"op": "refined", "image": i, "instance": j, "rle": rle, "status": inst.status,
                       "boxes": None if boxes is None else inst.boxes.tolist()})
        self.events.changed.emit(SessionEvent("refined", i, j))

    def set_patches(self, i: int, j: int, boxes: np.ndarray | None, probs: np.ndarray | None = None) -> None:
        """Store the patches of a refinement whose mask went elsewhere (a re-refined touch-up becomes
        the edited mask through :meth:`set_edited_mask`): boxes (K, 4) int32, probs (K, P, P) float
        (kept as float16). Journalled (the boxes), not an undo step; emits a "patches" event."""
        inst = self.images[i].instances[j]
        inst.boxes = None if boxes is None else np.asarray(boxes, np.int32).reshape(-1, 4)
        inst.probs = None if probs is None else np.asarray(probs, np.float16)
        self._journal({"op": "patches", "image": i, "instance": j,
                       "boxes": None if inst.boxes is None else inst.boxes.tolist()})
        self.events.changed.emit(SessionEvent("patches", i, j))

    def set_weights(self, path: str | Path | None) -> None:
        """Remember the refinement weights in use (None: the shipped default); journalled, not an undo step."""
        self.weights = None if path is None else str(path)
        self._journal({"op": "weights", "path": self.weights})

    # ---- images and files ----------------------------------------------------------------------

    def select_image(self, i: int) -> None:
        """Make image i current; the previous one's arrays are released (kept as RLE)."""
        if i != self.current and 0 <= self.current < len(self.images):
            self.images[self.current].release()
        self.current = i
        self.images[i].keep_arrays(True)

    def export_dataset(self, unreviewed: str = "refined") -> Dataset:
        """The reviewed dataset: accepted and edited instances with their final mask, rejected ones
        with the coarse mask, unreviewed ones as ``unreviewed`` says (one of UNREVIEWED_CHOICES)."""
        if unreviewed not in UNREVIEWED_CHOICES:
            raise ValueError(f"unreviewed must be one of {UNREVIEWED_CHOICES}, got {unreviewed!r}")
        images = []
        for image in self.images:
            instances = []
            for inst in image.instances:
                name = inst.final_name
                if inst.status == "unreviewed":
                    if unreviewed == "omit":
                        continue
                    if unreviewed == "coarse":
                        name = "coarse"
                instances.append(dataclasses.replace(inst.source, rle=inst.rle(name)))
            rec = image.record
            images.append(ImageRecord(rec.path, rec.width, rec.height, instances, rec.image_id))
        return Dataset(images, dict(self.dataset.categories))

    def export(self, out: str | Path, format: str, unreviewed: str = "refined", **options) -> ExportReport:
        """Write the reviewed dataset with io.formats.save_dataset (format "coco", "cityscapes" or
        "labelme"). Returns what was written, kept and left out (see session.export.export_dataset:
        a COCO export of a COCO dataset keeps the original entries of images it could not read)."""
        dataset = self.export_dataset(unreviewed)
        omitted = sum(len(image.instances) for image in self.images) - sum(len(r.instances) for r in dataset.images)
        return export_dataset(dataset, out, format, source=self.source, problems=self.load_problems,
                              omitted=omitted, held=self.dataset, **options)

    def files_replaced(self, out: str | Path, format: str, **options) -> list[Path]:
        """Existing files that ``export(out, format, ...)`` would write over."""
        return files_replaced(self.dataset, out, format, copy_images=bool(options.get("copy_images")))

    def save(self) -> None:
        """Write the whole state to the session file now (compaction); the journal is emptied."""
        if self.store is None:
            return
        entries = []
        for i, image in enumerate(self.images):
            for j, inst in enumerate(image.instances):
                if inst.status != "unreviewed" or inst.has("refined") or inst.has("edited"):
                    entries.append([i, j, {"status": inst.status, "refined": inst.rle("refined"),
                                           "edited": inst.rle("edited"),
                                           "boxes": None if inst.boxes is None else inst.boxes.tolist()}])
        self.store.write_snapshot({"dataset": self._fingerprint(), "current": self.current, "instances": entries,
                                   "weights": self.weights,
                                   "source": None if self.source is None else self.source.to_dict()})
        self.events.saved.emit(SessionEvent("saved"))

    def close(self) -> None:
        """Save and close the journal."""
        if self.store is not None:
            self.save()
            self.store.close()

    # ---- internals -----------------------------------------------------------------------------

    def _commit(self, i: int, changes: list[Change], record: bool = True,
                window: tuple[int, int, int, int] | None = None) -> None:
        """Apply, record (undo step), journal and announce ``changes`` to image i. window: where the
        final masks changed, when the caller knows better than the changes say (a first stroke's
        diff holds the whole mask, its final mask changed only under the stroke)."""
        image = self.images[i]
        for change in changes:
            self._apply(image, change)
        if i != self.current:
            image.release()  # only the current image keeps arrays
        if record:
            image.history.push(tuple(changes))
        self._journal({"op": "change", "image": i, "changes": [c.to_json() for c in changes]})
        for change in changes:
            if change.diff is not None or change.creates or change.drops:
                area = window if window is not None and len(changes) == 1 else _change_window(change)
                self.events.changed.emit(SessionEvent("mask", i, change.instance, area))
            else:
                self.events.changed.emit(SessionEvent("status", i, change.instance))
        self.events.changed.emit(SessionEvent("history", i))

    @staticmethod
    def _apply(image: ImageState, change: Change) -> None:
        inst = image.instances[change.instance]
        if change.creates:
            inst._set("edited", np.zeros(image.shape, bool))
            inst._crops["edited"] = None  # empty: the flip below finds its box inside the diff
        delta = None if change.diff is None else inst._flip(change.diff)
        if change.drops:
            inst._set("edited", None)
        inst.status = change.status_after
        if delta is not None and _change_window(change) is not None and inst.final_name == "edited":
            inst._changed += delta  # the edited mask was and stays final: count the flipped pixels only
        else:
            inst._changed = None  # counted again when asked

    def _journal(self, entry: dict) -> None:
        if self.store is None:
            return
        self.store.append(entry)
        if self.store.needs_compaction:
            self.save()

    def _fingerprint(self) -> list:
        return [[Path(img.record.path).name, len(img.instances)] for img in self.images]

    def _restore(self) -> None:
        store = self.store
        try:
            snapshot, entries = store.load()
        except ValueError as exc:
            self._set_aside(f"{exc}; it was moved aside")
            return
        if snapshot is None:
            if entries:
                self._set_aside(f"{store.journal_path}: journal without its session file; it was moved aside")
            self.save()
            return
        if snapshot.get("dataset") != self._fingerprint():
            self._set_aside(f"{store.path}: belongs to another version of this dataset (other images or "
                            f"instance counts); it was moved aside and a new session started")
            return
        try:
            self.current = min(int(snapshot.get("current", 0)), max(len(self.images) - 1, 0))
            self.weights = snapshot.get("weights")
            self.source = self.source or DatasetSource.from_dict(snapshot.get("source"))
            for i, j, data in snapshot.get("instances", []):
                inst = self.images[i].instances[j]
                inst.status = data["status"]
                inst._set("refined", None, data.get("refined"))
                inst._set("edited", None, data.get("edited"))
                inst.boxes = None if data.get("boxes") is None else np.asarray(data["boxes"], np.int32).reshape(-1, 4)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            self._set_aside(f"{store.path}: damaged session file ({type(exc).__name__}: {exc}); it was moved aside")
            return
        for entry in entries:
            try:
                self._replay(entry)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                self.restore_message = (f"{store.journal_path}: change {entry.get('seq')} could not be replayed; "
                                        f"the session was restored up to the change before it")
                break
        self.restored = True
        self.save()  # compact: the snapshot now holds everything, a torn journal line is gone

    def _replay(self, entry: dict) -> None:
        if entry["op"] == "weights":
            self.weights = entry["path"]
            return
        image = self.images[entry["image"]]
        if entry["op"] == "change":
            for change in entry["changes"]:
                self._apply(image, Change.from_json(change))
        elif entry["op"] == "patches":
            boxes = entry["boxes"]
            image.instances[entry["instance"]].boxes = None if boxes is None else \
                np.asarray(boxes, np.int32).reshape(-1, 4)
        elif entry["op"] == "refined":
            inst = image.instances[entry["instance"]]
            inst._set("refined", None, entry["rle"])
            inst.status = entry["status"]
            boxes = entry.get("boxes")
            inst.boxes = None if boxes is None else np.asarray(boxes, np.int32).reshape(-1, 4)
        else:
            raise ValueError(f"unknown journal operation {entry['op']!r}")

    def _set_aside(self, message: str) -> None:
        """Move a session file (and journal) that cannot be used out of the way, start afresh."""
        store = self.store
        store.close()
        for path in (store.path, store.journal_path):
            if path.exists():
                path.replace(path.with_name(path.name + ".old"))
        for image in self.images:
            for k, inst in enumerate(image.instances):
                image.instances[k] = InstanceState(inst.source)
        store.seq = 0
        self.weights = None
        self.restore_message = message
        self.save()


def open_session(path: str | Path, format: str | None = None, annotations: str | Path | None = None,
                 predictions: str | Path | None = None, session_path: str | Path | None = None,
                 errors: list | None = None, save: bool = True) -> Session:
    """Load a dataset with io.formats.load_dataset and open (or restore) its session.

    With ``predictions``, the predictions are reviewed and the dataset's own annotations, when it
    has any, are the ground truth. session_path: default :func:`default_session_path` (beside
    the dataset; a session left there when its folder has become read-only is carried over).
    errors: a list that collects ``(path, message)`` for unreadable files (they are left out, and
    kept in ``session.load_problems``); None raises DatasetError at the first one. save: False
    keeps the session in memory only (no session file is read or written).
    """
    from ..io.formats import dataset_files, load_dataset
    from .store import beside_session_path, carry_over_session, default_session_path

    problems = None if errors is None else []
    format, ann_file, images_dir = dataset_files(path, format, annotations)
    annotations = annotations if ann_file is None else ann_file  # the folder's JSON files are not read again
    dataset = load_dataset(path, format=format, annotations=annotations, predictions=predictions, errors=problems)
    ground_truth = None
    if predictions is not None:
        try:
            ground_truth = load_dataset(path, format=format, annotations=annotations, errors=[])
        except DatasetError:
            ground_truth = None
        if ground_truth is not None and not any(rec.instances for rec in ground_truth.images):
            ground_truth = None
    if session_path is None and save:
        session_path = default_session_path(path, predictions)
        carry_over_session(beside_session_path(path, predictions), session_path)
    source = DatasetSource(Path(path).resolve(), format, ann_file and Path(ann_file).resolve(),
                           images_dir and Path(images_dir).resolve(),
                           None if predictions is None else Path(predictions).resolve())
    session = Session(dataset, session_path if save else None, ground_truth=ground_truth, source=source)
    if problems is not None:
        session.load_problems = list(problems)
        errors.extend(problems)
    return session
