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

from ..core.rle import decode_rle, encode_rle
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
    should_stop, on_batch)`` (as core.refiner.Refiner) and ``device_name``.

    Signals: stage(text) what it is doing ("loading model", "reading NAME", "refining NAME");
    device(str) once the refiner is ready; instanceDone(image, instance, RefinedInstance, COCO RLE
    of its mask (encoded here, off the GUI thread), as_edit) per instance; progress(instances done,
    instances in all, patches done, patches of the current image) after each batch and instance;
    imageFailed(image, message) for an unreadable image (the others go on); failed(message,
    details) when the refiner cannot be made (message: one line, details empty) or anything else
    goes wrong (details: the traceback), and the run stops; finished(cancelled) always, last.
    """

    stage = QtCore.pyqtSignal(str)
    device = QtCore.pyqtSignal(str)
    instanceDone = QtCore.pyqtSignal(int, int, object, object, bool)
    progress = QtCore.pyqtSignal(int, int, int, int)
    imageFailed = QtCore.pyqtSignal(int, str)
    failed = QtCore.pyqtSignal(str, str)
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

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called."""
        return self._stop.is_set()

    @QtCore.pyqtSlot()
    def run(self) -> None:
        from ..core.refiner import RefineCancelled

        cancelled = False
        self.stage.emit("loading model")
        try:
            refiner = self.refiner_provider()
        except Exception as exc:  # a bad weights file, a device this machine lacks: one line, no traceback
            self.failed.emit(f"cannot load the refiner: {_one_line(exc)}", "")
            self.finished.emit(False)
            return
        try:
            self.device.emit(str(getattr(refiner, "device_name", "CPU")))
            self._run_jobs(refiner)
        except RefineCancelled:
            cancelled = True
        except Exception as exc:  # shown in a dialog; the window goes on
            self.failed.emit(_one_line(exc), traceback.format_exc(limit=6))
        self.finished.emit(cancelled)

    def _run_jobs(self, refiner) -> None:
        from ..core.refiner import RefineCancelled

        done = 0
        patches = [0, 0]  # done, total of the current image
        self.progress.emit(0, self.total, 0, 0)
        for job in self.jobs:
            if self._stop.is_set():
                raise RefineCancelled("cancelled")
            name = job.image.path.name
            self.stage.emit(f"reading {name}")
            try:
                pixels = job.image.read_image()
            except DatasetError as exc:
                self.imageFailed.emit(job.image_index, str(exc))
                done += len(job.instances)
                self.progress.emit(done, self.total, 0, 0)
                continue
            masks = np.stack([decode_rle(m) if isinstance(m, dict) else m for m in job.masks]) if job.masks \
                else np.zeros((0,) + pixels.shape[:2], bool)
            self.stage.emit(f"refining {name}")
            patches[:] = [0, 0]

            def on_instance(result, job=job):
                nonlocal done
                done += 1
                self.instanceDone.emit(job.image_index, job.instances[result.index], result, encode_rle(result.mask),
                                       job.as_edit)
                self.progress.emit(done, self.total, *patches)

            def on_batch(done_patches, total_patches):
                patches[:] = [done_patches, total_patches]
                self.progress.emit(done, self.total, done_patches, total_patches)

            refiner.refine(pixels, masks, on_instance=on_instance, should_stop=self._stop.is_set, on_batch=on_batch)


def _one_line(exc: Exception) -> str:
    """An exception as one line: its message, or its type when the message is empty."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def start_worker(worker: RefineWorker, parent: QtCore.QObject) -> QtCore.QThread:
    """Move ``worker`` to a new QThread and start it; the thread quits and both are deleted when it finishes.

    The worker quits its thread itself (a direct call, QThread.quit is thread-safe): queued to the
    GUI thread, the quit would never arrive while that thread blocks in QThread.wait(), as closing
    the window does."""
    thread = QtCore.QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit, QtCore.Qt.DirectConnection)
    thread.finished.connect(worker.deleteLater)
    thread.finished.connect(thread.deleteLater)
    thread.start()
    return thread
