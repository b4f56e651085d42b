"""Refinement in the background: a QObject run in a QThread that refines jobs image by image and reports each instance.

The worker only reads what the jobs carry (immutable RLE, copies of edited masks); every change to
the session happens in the GUI thread, in the slots connected to its signals.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PyQt5 import QtCore

from ..io.dataset import decode_rle, encode_rle
from ..io.errors import DatasetError


@dataclass
class RefineJob:
    """What to refine in one image.

    image_index: index in the session. image: the session's ImageState (read in the worker).
    instances: instance indices to refine. masks: for each, the input mask (H, W) bool, or a COCO
    RLE dict to decode in the worker (the coarse mask). as_edit: the results replace the edited
    masks (re-refining a touch-up) instead of being stored as refined masks.
    """

    image_index: int
    image: object
    instances: list[int]
    masks: list = field(default_factory=list)
    as_edit: bool = False


class RefineWorker(QtCore.QObject):
    """Runs ``refiner.refine`` over jobs. ``refiner_provider()`` is called in the worker thread
    (loading weights takes a while) and returns an object with ``refine(image, masks, on_instance,
    should_stop)`` and ``device_name``.

    Signals: device(str) once the refiner is ready; instanceDone(image, instance, RefinedInstance,
    COCO RLE of its mask (encoded here, off the GUI thread), as_edit) per instance; progress(done, total) instances; imageFailed(image, message) for an
    unreadable image (the others go on); failed(message) for any other exception (the run stops);
    finished(cancelled) always, last.
    """

    device = QtCore.pyqtSignal(str)
    instanceDone = QtCore.pyqtSignal(int, int, object, object, bool)
    progress = QtCore.pyqtSignal(int, int)
    imageFailed = QtCore.pyqtSignal(int, str)
    failed = QtCore.pyqtSignal(str)
    finished = QtCore.pyqtSignal(bool)

    def __init__(self, jobs: list[RefineJob], refiner_provider: Callable[[], object]) -> None:
        super().__init__()
        self.jobs = jobs
        self.refiner_provider = refiner_provider
        self.total = sum(len(job.instances) for job in jobs)
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop at the next batch (thread-safe)."""
        self._stop.set()

    @QtCore.pyqtSlot()
    def run(self) -> None:
        from ..core.refiner import RefineCancelled

        cancelled = False
        done = 0
        try:
            refiner = self.refiner_provider()
            self.device.emit(str(getattr(refiner, "device_name", "CPU")))
            self.progress.emit(0, self.total)
            for job in self.jobs:
                if self._stop.is_set():
                    raise RefineCancelled("cancelled")
                try:
                    pixels = job.image.read_image()
                except DatasetError as exc:
                    self.imageFailed.emit(job.image_index, str(exc))
                    done += len(job.instances)
                    self.progress.emit(done, self.total)
                    continue
                masks = np.stack([decode_rle(m) if isinstance(m, dict) else m for m in job.masks]) if job.masks \
                    else np.zeros((0,) + pixels.shape[:2], bool)

                def on_instance(result, job=job):
                    nonlocal done
                    done += 1
                    self.instanceDone.emit(job.image_index, job.instances[result.index], result, encode_rle(result.mask),
                                           job.as_edit)
                    self.progress.emit(done, self.total)

                refiner.refine(pixels, masks, on_instance=on_instance, should_stop=self._stop.is_set)
        except RefineCancelled:
            cancelled = True
        except Exception as exc:  # shown in a dialog; the window goes on
            self.failed.emit(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}")
        self.finished.emit(cancelled)


def start_worker(worker: RefineWorker, parent: QtCore.QObject) -> QtCore.QThread:
    """Move ``worker`` to a new QThread and start it; the thread quits and both are deleted when it finishes."""
    thread = QtCore.QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.finished.connect(thread.deleteLater)
    thread.start()
    return thread
