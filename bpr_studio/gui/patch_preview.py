"""The boundary patches of touched-up masks, found in a background thread so a stroke does not wait for them.

Finding the patches of a large instance costs tens of milliseconds (the boundary score over its box,
NMS); after a stroke the window asks this helper, which works on a copy of each mask's window and
announces the boxes when done. Only the newest request for a key (an instance) counts: one that
arrives while another is being computed waits for it and replaces the request for the same key still
waiting; a result that a newer request for its key (or ``cancel``) made stale is dropped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PyQt5 import QtCore

from ..core.config import RefinerConfig
from ..core.refiner import patch_boxes
from ..session.model import crop_box, crop_window, grow_box


def mask_window(crop, shape: tuple[int, int]):
    """(x0, y0, (h, w) bool copy) of a crop (x0, y0, (h, w) bool) with the 2-pixel margin
    ``patch_boxes`` needs, clipped to the image of ``shape`` (H, W); None for None."""
    box = crop_box(crop)
    if box is None:
        return None
    box = grow_box(box, 2, shape)
    return box[0], box[1], crop_window(crop, box)


def window_patch_boxes(windows, shape: tuple[int, int], config: RefinerConfig) -> np.ndarray:
    """The boxes (K, 4) int32 ``patch_boxes`` gives for masks given as windows (see ``mask_window``)."""
    boxes = [patch_boxes(mask, config, origin=(x0, y0), shape=shape)
             for x0, y0, mask in (w for w in windows if w is not None)]
    return np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int32)


class PatchPreview(QtCore.QObject):
    """``request(key, windows, shape, config)`` computes ``window_patch_boxes`` in a thread, then
    ``ready(key, boxes)`` is emitted in the GUI thread, unless a newer request for ``key`` or
    ``cancel()`` came in between."""

    ready = QtCore.pyqtSignal(object, object)  # key, (K, 4) int32 boxes
    _done = QtCore.pyqtSignal(int, object, object)  # generation, key, boxes (from the worker thread)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patch-preview")
        self._generation = 0
        self._latest: dict = {}  # key -> generation of its newest request
        self._running = False
        self._waiting: dict = {}  # key -> job, in request order
        self._done.connect(self._finished)

    @property
    def busy(self) -> bool:
        """Whether a request is being computed or waiting."""
        return self._running or bool(self._waiting)

    def request(self, key, windows, shape: tuple[int, int], config: RefinerConfig) -> None:
        """windows: copies the caller no longer changes (``mask_window``)."""
        self._generation += 1
        self._latest[key] = self._generation
        job = (self._generation, key, list(windows), shape, config)
        if self._running:
            self._waiting.pop(key, None)
            self._waiting[key] = job
        else:
            self._start(job)

    def cancel(self) -> None:
        """Drop the results of every request made so far."""
        self._latest.clear()
        self._waiting.clear()

    def shutdown(self) -> None:
        self.cancel()
        self._executor.shutdown(wait=True)

    def _start(self, job) -> None:
        generation, key, windows, shape, config = job
        self._running = True

        def work():
            try:
                boxes = window_patch_boxes(windows, shape, config)
            except Exception:  # noqa: BLE001 - a preview that failed is not shown; refinement says why
                boxes = None
            try:
                self._done.emit(generation, key, boxes)
            except RuntimeError:  # the window was closed meanwhile
                pass

        self._executor.submit(work)

    def _finished(self, generation: int, key, boxes) -> None:
        self._running = False
        if self._latest.get(key) == generation:
            del self._latest[key]
            if boxes is not None:
                self.ready.emit(key, boxes)
        if self._waiting:
            key = next(iter(self._waiting))
            self._start(self._waiting.pop(key))
