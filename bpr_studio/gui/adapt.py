"""Refine > Adapt model to this dataset: fine-tune the weights in use on the session's corrections in the background.

The controller adds its actions to the Refine menu and a "weights:" label, a progress bar and a
Cancel button to the status bar. Adaptation runs core.adapt.adapt_weights in a QThread on copies of
the corrected masks; when the guard keeps the result, it is written to ``<session name>.adapted.pt``
beside the session, the refiner switches to it and the session remembers it. Nothing already
refined is touched: "Refine unreviewed instances" re-refines the unreviewed ones, when the user asks.
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

import numpy as np
from PyQt5 import QtCore, QtWidgets

from ..core.adapt import CorrectedImage
from ..core.config import RefinerConfig, weights_name, weights_path
from ..session.adapt import adapted_weights_path, corrected_images, unreviewed_instances
from .worker import start_worker


class AdaptWorker(QtCore.QObject):
    """Runs core.adapt.adapt_weights in a worker thread.

    Signals: progress(elapsed, budget) in whole seconds after each training slice; message(str) for
    log lines; done(AdaptResult) or failed(message), then finished(), always last.
    """

    progress = QtCore.pyqtSignal(int, int)
    message = QtCore.pyqtSignal(str)
    done = QtCore.pyqtSignal(object)
    failed = QtCore.pyqtSignal(str)
    finished = QtCore.pyqtSignal()

    def __init__(self, images: list[CorrectedImage], out: Path, base_weights, minutes: float, device: str,
                 options: dict | None = None) -> None:
        super().__init__()
        self.images, self.out, self.base_weights = images, out, base_weights
        self.minutes, self.device, self.options = minutes, device, options or {}
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Ask the run to stop at the end of the current training slice (thread-safe)."""
        self._stop.set()

    @QtCore.pyqtSlot()
    def run(self) -> None:
        from ..core.adapt import AdaptError, adapt_weights

        try:
            result = adapt_weights(self.images, self.out, self.base_weights, minutes=self.minutes, device=self.device,
                                   log=self.message.emit, should_stop=self._stop.is_set,
                                   on_progress=lambda e, b: self.progress.emit(int(e), int(b)), **self.options)
            self.done.emit(result)
        except AdaptError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # shown in a dialog; the window goes on
            self.failed.emit(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=6)}")
        self.finished.emit()


class AdaptController(QtCore.QObject):
    """The window's adaptation: actions, status-bar widgets, the worker, which weights are in use.

    minutes: the training budget (3 on CPU). options: extra keyword arguments of adapt_weights
    (tests shorten the slices). weights: the weights file in use (None: the window's default).
    """

    adaptFinished = QtCore.pyqtSignal(object)  # AdaptResult, or None after a failure

    def __init__(self, window) -> None:
        super().__init__(window)
        from .main_window import default_refiner_factory

        self.window = window
        self._default_factory = window.refinement.factory
        self._make_factory = default_refiner_factory
        self.default_weights = getattr(self._default_factory, "weights", None)
        self.device = getattr(self._default_factory, "device", "auto")
        self.weights: Path | None = None
        self.minutes = 3.0
        self.options: dict = {}
        self.last_message = ""
        self._worker: AdaptWorker | None = None
        self._session = None
        self._thread: QtCore.QThread | None = None

        status = window.statusBar()
        self.weights_label = QtWidgets.QLabel()
        self.weights_label.setToolTip("the refinement weights in use")
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(200)
        self.progress_bar.setFormat("adapting %p%")
        self.cancel_button = QtWidgets.QPushButton("Cancel adaptation")
        self.cancel_button.setFocusPolicy(QtCore.Qt.NoFocus)
        self.cancel_button.clicked.connect(self.cancel)
        for widget in (self.progress_bar, self.cancel_button, self.weights_label):
            widget.setContentsMargins(8, 0, 8, 0)
            status.addPermanentWidget(widget)
        self.progress_bar.hide()
        self.cancel_button.hide()

        menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Refine")
        menu.addSeparator()
        self.actions = {}
        for name, text, slot in (("adapt", "&Adapt model to this dataset", self.start),
                                 ("adapt_budget", "Adaptation time &budget...", self.ask_budget),
                                 ("adapt_cancel", "Cancel ada&ptation", self.cancel),
                                 ("default_weights", "Use de&fault weights", lambda: self.use_weights(None)),
                                 ("precise_weights", "Use &precise weights (input 128, 6-7x the time)",
                                  lambda: self.use_weights(weights_path("precise"))),
                                 ("weights_file", "Use weights &file...", self.choose_weights),
                                 ("refine_unreviewed", "Refine &unreviewed instances", self.refine_unreviewed)):
            if name == "default_weights":  # the weights to refine with, after adaptation's own actions
                menu.addSeparator()
            action = QtWidgets.QAction(text, window)
            action.triggered.connect(lambda *_, slot=slot: slot())
            menu.addAction(action)
            window.actions[name] = action
            self.actions[name] = action
        self._show_weights()

    # ---- weights -------------------------------------------------------------------------------

    @property
    def adapting(self) -> bool:
        return self._worker is not None

    @property
    def weights_in_use(self):
        """The weights file the refiner loads (None: the shipped model)."""
        return self.weights if self.weights is not None else self.default_weights

    def use_weights(self, path, announce: bool = True) -> None:
        """Refine with ``path`` from now on (None: the window's default weights); the session remembers it.
        The View panel's patch size becomes the one the weights were trained on (:meth:`_patch_size_of`).
        Nothing is re-refined. announce: say it in the status bar (the weights label always shows it)."""
        window = self.window
        self.weights = None if path is None else Path(path)
        window.refinement.set_factory(self._default_factory if path is None
                                      else self._make_factory(self.weights, self.device))
        recorded = None if path is None else weights_name(path)
        if window.session is not None and window.session.weights != recorded:
            window.session.set_weights(recorded)
        self._show_weights()
        message = "default weights in use" if path is None else f"weights in use: {self.weights.name}"
        trained, spin = self._patch_size_of(self.weights_in_use), window.view_controls.patch_size
        if trained != spin.value():  # the preview and the next refinement follow the panel
            spin.setValue(trained)
            self._say(f"{message}; patch size {trained} px, as they were trained")
        elif announce:
            self._say(message)

    @staticmethod
    def _patch_size_of(path) -> int:
        """The patch size (px) weights ``path`` (None: the shipped default) were trained on: what the file
        records, else RefinerConfig's default (the shipped files, written before files recorded it, were
        trained at 64). A file that does not load gives the default; the refiner says why when it loads it."""
        from ..core.model import WeightsError, trained_patch_size
        from ..core.refiner import default_weights_path

        try:
            trained = trained_patch_size(path if path is not None else default_weights_path())
        except WeightsError:
            trained = None
        return trained or RefinerConfig.patch_size

    def choose_weights(self, path=None) -> bool:
        """Refine with a weights file the user picks (``path`` given: that one, no dialog), e.g. one
        written by ``bpr-studio train``. A file that does not load is said, naming it and why, and the
        weights in use stay. Returns whether the weights changed."""
        from ..core.model import WeightsError, load_weights

        if path is None:
            start = str(self.weights_in_use or weights_path("fast"))
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self.window, "Refinement weights", start,
                                                            "BPR Studio weights (*.pt);;All files (*)")
            if not path:
                return False
        try:
            load_weights(path)
        except WeightsError as exc:
            self.window.show_error("Refinement weights", f"{exc}; the weights in use are unchanged")
            return False
        self.use_weights(path)
        return True

    def session_opened(self, session) -> None:
        """Take the weights the session remembers (the default when it names none or the file is gone); an
        adaptation still running for the previous session is cancelled."""
        self.cancel()
        remembered = None if session.weights is None else weights_path(session.weights)
        if remembered is not None and not remembered.is_file():
            self.window.show_error("Refinement weights", f"{remembered}: the weights this session used are "
                                                         f"gone; refining with the default weights")
            remembered = None
        # the default needs no message (the window's first-use hint and restore message stay visible)
        self.use_weights(remembered, announce=remembered is not None)

    def _show_weights(self) -> None:
        path = self.weights_in_use
        self.weights_label.setText(f"weights: {'default' if path is None else Path(path).name}")

    def _say(self, message: str, ms: int = 8000) -> None:
        self.last_message = message
        self.window.statusBar().showMessage(message, ms)

    # ---- adaptation ----------------------------------------------------------------------------

    def ask_budget(self) -> None:
        minutes, ok = QtWidgets.QInputDialog.getDouble(self.window, "Adaptation", "Training time budget (minutes):",
                                                       self.minutes, 0.1, 120.0, 1)
        if ok:
            self.minutes = minutes

    def start(self) -> bool:
        """Start adapting to the session's corrections. Returns False (and says why) when it cannot."""
        window, session = self.window, self.window.session
        if session is None:
            return False
        if self.adapting:
            self._say("an adaptation is running: wait for it or cancel it", 4000)
            return False
        if window.refining:
            self._say("a refinement is running: wait for it or cancel it, then adapt", 4000)
            return False
        try:
            out = adapted_weights_path(session)
        except ValueError as exc:
            window.show_error("Adaptation", str(exc))
            return False
        images = [CorrectedImage(image.name, image.read, [np.array(m) for m in image.coarse],
                                 [np.array(m) for m in image.final]) for image in corrected_images(session)]
        worker = AdaptWorker(images, out, self.weights_in_use, self.minutes, self.device, self.options)
        worker.progress.connect(self._progress)
        worker.message.connect(lambda line: window.statusBar().showMessage(line))
        worker.done.connect(self._done)
        worker.failed.connect(self._failed)
        worker.finished.connect(self._finished)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.cancel_button.show()
        count = sum(len(image) for image in images)
        self._say(f"adapting to {count} corrected instance(s) for {self.minutes:g} min", 0)
        self._worker = worker
        self._session = session
        self._thread = start_worker(worker, self)
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._say("cancelling the adaptation (at the end of the current training slice)...", 0)

    def _progress(self, elapsed: int, budget: int) -> None:
        self.progress_bar.setValue(int(100 * elapsed / max(budget, 1)))

    def _done(self, result) -> None:
        if self._session is not self.window.session:  # another dataset was opened meanwhile
            result.cancelled = True
        if result.cancelled:
            self._say(result.message)
        elif result.kept:
            self.use_weights(result.out)
            self._say(f"{result.message}. Refine > Refine unreviewed instances applies them", 0)
        else:
            self._say(f"{result.message}; the weights in use are unchanged", 0)
        self.adaptFinished.emit(result)

    def _failed(self, message: str) -> None:
        self.window.show_error("Adaptation failed", message)
        self._say("adaptation failed; the weights in use are unchanged")
        self.adaptFinished.emit(None)

    def _finished(self) -> None:
        self._worker = None
        self._thread = None
        self.progress_bar.hide()
        self.cancel_button.hide()

    def wait(self, ms: int = 10000) -> None:
        """Block until the worker thread ends (window closing)."""
        if self._thread is not None:
            self._thread.wait(ms)
            QtWidgets.QApplication.processEvents()

    # ---- re-refinement -------------------------------------------------------------------------

    def refine_unreviewed(self) -> None:
        """Refine every unreviewed instance again with the weights in use; reviewed ones stay as they are."""
        window = self.window
        if window.session is None:
            return
        jobs = [window._job(window.session.images[i], js) for i, js in unreviewed_instances(window.session).items()]
        window._start_refinement(jobs, "unreviewed instances")


def install_adapt(window) -> AdaptController:
    """Add adaptation to a MainWindow (called from ``MainWindow.__init__`` after its actions exist)."""
    return AdaptController(window)
