"""Undo and redo per image: each step stores the pixels that flipped (bounding box + packed xor), not whole masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.boundary import mask_bbox
from ..core.rle import decode_rle, encode_rle


@dataclass(frozen=True)
class MaskDiff:
    """The pixels that differ between two (H, W) bool masks.

    bbox: (x0, y0, x1, y1) end-exclusive, tight around the flipped pixels.
    bits: np.packbits of the (y1 - y0, x1 - x0) bool xor inside bbox (uint8, 1 bit per pixel).
    Applying the diff (xor) turns either mask into the other, so the same diff serves undo and redo.
    """

    bbox: tuple[int, int, int, int]
    bits: np.ndarray

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray,
                window: tuple[int, int, int, int] | None = None) -> "MaskDiff | None":
        """Diff of two (H, W) bool masks, looking only inside ``window`` (x0, y0, x1, y1) when given
        (the caller promises nothing changed outside it). None when the masks are equal there."""
        x0, y0, x1, y1 = window if window is not None else (0, 0, before.shape[1], before.shape[0])
        flipped = before[y0:y1, x0:x1] ^ after[y0:y1, x0:x1]
        return cls.from_xor(flipped, (x0, y0))

    @classmethod
    def from_xor(cls, flipped: np.ndarray, origin: tuple[int, int]) -> "MaskDiff | None":
        """flipped: (h, w) bool xor whose top-left pixel is at image position origin (x, y)."""
        box = mask_bbox(flipped)
        if box is None:
            return None
        bx0, by0, bx1, by1 = box
        crop = np.ascontiguousarray(flipped[by0:by1, bx0:bx1])
        ox, oy = origin
        return cls((ox + bx0, oy + by0, ox + bx1, oy + by1), np.packbits(crop, axis=None))

    @property
    def xor(self) -> np.ndarray:
        """(y1 - y0, x1 - x0) bool: the flipped pixels inside bbox."""
        x0, y0, x1, y1 = self.bbox
        h, w = y1 - y0, x1 - x0
        return np.unpackbits(self.bits, count=h * w).reshape(h, w).astype(bool)

    @property
    def changed_pixels(self) -> int:
        return int(np.unpackbits(self.bits).sum())

    def apply(self, mask: np.ndarray) -> None:
        """Flip the pixels of this diff in ``mask`` (H, W) bool, in place."""
        x0, y0, x1, y1 = self.bbox
        mask[y0:y1, x0:x1] ^= self.xor

    def to_json(self) -> dict:
        """{'bbox': [x0, y0, x1, y1], 'rle': COCO RLE of the xor crop}."""
        return {"bbox": list(self.bbox), "rle": encode_rle(self.xor)}

    @classmethod
    def from_json(cls, data: dict) -> "MaskDiff":
        x0, y0, _, _ = data["bbox"]
        diff = cls.from_xor(decode_rle(data["rle"]), (x0, y0))
        if diff is None:
            raise ValueError("empty mask diff")
        return diff


@dataclass(frozen=True)
class Change:
    """One instance's change: its review status and, optionally, its edited mask.

    diff: flips applied to the edited mask (None: the mask did not change).
    creates: before the change the instance had no edited mask; it starts from an empty mask and
    the diff is the whole new mask. drops: after the change the edited mask is discarded (the
    diff has emptied it). ``inverse()`` swaps the two, so undo is just applying the inverse.
    """

    instance: int
    status_before: str
    status_after: str
    diff: MaskDiff | None = None
    creates: bool = False
    drops: bool = False

    def inverse(self) -> "Change":
        return Change(self.instance, self.status_after, self.status_before, self.diff,
                      creates=self.drops, drops=self.creates)

    def to_json(self) -> dict:
        data = {"instance": self.instance, "status": [self.status_before, self.status_after]}
        if self.diff is not None:
            data["diff"] = self.diff.to_json()
        if self.creates:
            data["creates"] = True
        if self.drops:
            data["drops"] = True
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Change":
        before, after = data["status"]
        diff = MaskDiff.from_json(data["diff"]) if "diff" in data else None
        return cls(int(data["instance"]), before, after, diff,
                   bool(data.get("creates", False)), bool(data.get("drops", False)))


Step = tuple[Change, ...]
"""What one user action changed (accept-all changes several instances at once)."""


class History:
    """Undo and redo stacks of one image. A new step clears the redo stack; at most ``limit`` undo steps."""

    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self._undo: list[Step] = []
        self._redo: list[Step] = []

    def push(self, step: Step) -> None:
        self._undo.append(step)
        del self._undo[:-self.limit]
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def pop_undo(self) -> Step | None:
        """The step to revert (moved to the redo stack), or None."""
        if not self._undo:
            return None
        step = self._undo.pop()
        self._redo.append(step)
        return step

    def pop_redo(self) -> Step | None:
        """The step to apply again (moved back to the undo stack), or None."""
        if not self._redo:
            return None
        step = self._redo.pop()
        self._undo.append(step)
        return step
