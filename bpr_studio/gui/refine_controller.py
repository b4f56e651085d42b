"""Background refinement for the main window: the refiner, the worker thread, progress, results into the session.

The window decides what to refine (the image, the selected instances, the dataset) and arranges the
status-bar widgets; this controller runs the jobs: one RefineWorker thread at a time, a refiner made
once (in the worker thread) by the factory and reused, each run with the frozen RefinerConfig it was
started with, progress and cancellation shown on the window's widgets, results stored through
Session methods as they arrive.
"""

from __future__ import annotations

import dataclasses
import functools
import threading

from PyQt5 import QtCore, sip

from ..core.config import RefinerConfig
from .panels import ViewControls
from .worker import RefineJob, RefineWorker, start_worker


class RefineController(QtCore.QObject):
    """Runs refinement jobs for ``window`` (a MainWindow: its session, status bar, progress widgets
    and the signals instanceRefined / refineFinished).

    factory: ``config -> object with refine(image, masks, on_instance, should_stop, on_batch) and
    device_name``, called once in the worker thread; ``set_factory`` replaces it (other weights).
    """

    def __init__(self, window, factory) -> None:
        super().__init__(window)
        self.window = window
        self.factory = factory
        self.refiner = None
        self._lock = threading.Lock()
        self._worker: RefineWorker | None = None
        self._thread: QtCore.QThread | None = None
        self._without_patches = 0  # instances of the running refinement that got no patches
        self._error: str | None = None  # why the running refinement stopped, if it failed
        self._stage = ""  # what the worker is doing, for the progress label
        self._config: RefinerConfig | None = None  # the settings of the running refinement

    @property
    def refining(self) -> bool:
        return self._worker is not None

    def set_factory(self, factory) -> None:
        """Refine with refiners from ``factory`` from now on (the next refinement makes a new one)."""
        with self._lock:
            self.factory = factory
            self.refiner = None

    @staticmethod
    def job(image, instances, mask_of=None) -> RefineJob:
        """A job over ``instances`` (indices) of an ImageState: their coarse masks (as RLE), or, with
        ``mask_of(instance state) -> (H, W) bool``, those masks (a touch-up re-refined)."""
        instances = list(instances)
        masks = [mask_of(image.instances[j]).copy() if mask_of is not None else image.instances[j].source.rle
                 for j in instances]
        return RefineJob(image.index, image, instances, masks, mask_of is not None)

    def start(self, jobs: list[RefineJob], what: str, config: RefinerConfig) -> bool:
        """Refine ``jobs`` in the background with ``config`` (patch settings); ``what`` names them in
        the status bar. False (and said) when a refinement is running or there is nothing to do."""
        window = self.window
        if self.refining:
            window.statusBar().showMessage("a refinement is running: wait for it or cancel it", 4000)
            return False
        if not jobs:
            window.statusBar().showMessage("nothing to refine", 3000)
            return False
        self._config = config
        worker = RefineWorker(jobs, functools.partial(self._provide_refiner, config))
        worker.stage.connect(self._stage_changed)
        worker.device.connect(lambda name: window.device_label.setText(f"device: {name}"))
        worker.instanceDone.connect(functools.partial(self._instance_refined, window.session))
        worker.progress.connect(self._progress)
        worker.imageFailed.connect(functools.partial(self._image_failed, window.session))
        worker.failed.connect(self._failed)
        worker.finished.connect(self._finished)
        window.progress_bar.setRange(0, 0)  # busy until the first image's patches are counted
        window.progress_label.setText("starting")
        window.cancel_button.setEnabled(True)
        self.show_progress(True)
        window.statusBar().showMessage(f"refining {what}: {worker.total} instance(s)")
        self._without_patches = 0
        self._error = None
        self._worker = worker
        self._thread = start_worker(worker, self)
        return True

    def cancel(self) -> None:
        """Ask a running refinement to stop after its current batch; the status bar says so at once."""
        if self._worker is not None and not self._worker.cancelled:
            self._worker.cancel()
            self.window.progress_label.setText("cancelling...")
            self.window.cancel_button.setEnabled(False)
            self.window.statusBar().showMessage("cancelling...")

    def wait(self, ms: int | None = 10000) -> None:
        """Wait (with the window still painting) until the running refinement has finished, at most
        ``ms`` milliseconds (None: until its thread has ended, as the window must before it is
        deleted: Qt aborts the program when a running QThread is destroyed)."""
        thread = self._thread
        if thread is None:
            return
        loop = QtCore.QEventLoop()
        self.window.refineFinished.connect(loop.quit)
        if ms is not None:
            QtCore.QTimer.singleShot(ms, loop.quit)
        if self.refining:
            loop.exec_()
        self.window.refineFinished.disconnect(loop.quit)
        if sip.isdeleted(thread):
            return
        if ms is None:
            thread.wait()
        else:
            thread.wait(1000)

    def show_progress(self, visible: bool) -> None:
        for widget in (self.window.progress_label, self.window.progress_bar, self.window.cancel_button):
            widget.setVisible(visible)

    # ---- from the worker -------------------------------------------------------------------------

    def _provide_refiner(self, config: RefinerConfig):
        """Called in the worker thread: the refiner (made on first use) with the run's patch settings."""
        with self._lock:
            if self.refiner is None:
                self.refiner = self.factory(config)
            elif isinstance(getattr(self.refiner, "config", None), RefinerConfig):
                self.refiner.config = dataclasses.replace(
                    self.refiner.config, **{name: getattr(config, name) for name in ViewControls.SETTINGS})
            return self.refiner

    def _instance_refined(self, session, i: int, j: int, result, rle: dict, as_edit: bool) -> None:
        if session is not self.window.session:  # a result that arrived after another dataset was opened
            return
        if as_edit:
            session.set_edited_mask(i, j, result.mask)
            session.set_patches(i, j, result.boxes, result.probs)
        else:
            session.set_refined(i, j, result.mask, result.boxes, result.probs, rle=rle)
        self._without_patches += len(result.boxes) == 0
        self.window.instanceRefined.emit(i, j)

    def _stage_changed(self, text: str) -> None:
        if not (self._worker is not None and self._worker.cancelled):
            self.window.progress_label.setText(text + ("..." if text == "loading model" else ""))
            self._stage = text

    def _progress(self, done: int, total: int, done_patches: int, image_patches: int) -> None:
        """The bar counts the patches of the image being refined; the label the instances of the whole run."""
        if self._worker is None or self._worker.cancelled:
            return
        self.window.progress_bar.setRange(0, max(image_patches, 1))
        self.window.progress_bar.setValue(done_patches)
        self.window.progress_label.setText(f"{self._stage}: {done}/{total} instances")

    def _failed(self, message: str, details: str) -> None:
        self._error = message
        box = self.window.show_error("Refinement stopped", message)
        if details:
            box.setDetailedText(details)

    def _image_failed(self, session, i: int, message: str) -> None:
        if session is not self.window.session:
            return
        self.window.image_list.update_image(session.images[i])
        self.window.statusBar().showMessage(f"skipped: {message}", 6000)

    def _finished(self, cancelled: bool) -> None:
        self._worker = None
        self._thread = None
        self.show_progress(False)
        message = "refinement cancelled" if cancelled else "refinement finished"
        if self._error:
            message = f"refinement stopped: {self._error}"
        if self._without_patches:
            message += f"; {self._without_patches} under the min size ({self._config.min_size} px) kept coarse"
        self.window.statusBar().showMessage(message, 8000)
        self.window.refineFinished.emit(cancelled)
