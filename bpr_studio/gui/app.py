"""Starting the window: the demo dataset, command-line options, offscreen screenshots."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import RESOURCES

DEMO = RESOURCES / "demo"


def demo_session_path() -> Path:
    """The demo's session lives in the user's data folder, never inside the installed package."""
    from ..session import default_session_path

    return default_session_path(DEMO / "annotations.json", DEMO / "predictions.json", beside=False)


def run_gui(path=None, annotations=None, predictions=None, format=None, session=None, weights=None,
            device: str = "auto", screenshot=None, refine: bool = False, size=(1400, 900)) -> int:
    """Open the window on a dataset (None: the shipped demo). Returns an exit status.

    With ``screenshot`` (a PNG path): render offscreen, refine the first image first when
    ``refine`` (then with the Inspect tab in front), select its largest instance with its boundary
    patches (and the ground-truth outlines when loaded), save the window and return; no session
    file is read or written unless ``session`` names one.
    """
    if screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5 import QtCore, QtWidgets

    from .main_window import MainWindow, checked_device, default_refiner_factory

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("BPR Studio")
    device, device_problem = checked_device(device)
    if device_problem:
        print(f"bpr-studio gui: {device_problem}", file=sys.stderr)
    remembered = None if screenshot is not None else QtCore.QSettings("BPR Studio", "BPR Studio")
    window = MainWindow(refiner_factory=default_refiner_factory(weights, device), device=device,
                        layout_settings=remembered)
    if screenshot is not None:
        window.resize(*size)
    save = screenshot is None or session is not None
    if path is None:
        opened = window.open_dataset(DEMO / "annotations.json", predictions=DEMO / "predictions.json",
                                     session_path=session or demo_session_path(), save=save)
    else:
        opened = window.open_dataset(path, format=format, annotations=annotations, predictions=predictions,
                                     session_path=session, save=save)
    if device_problem:
        window.device_label.setToolTip(device_problem)
        window.statusBar().showMessage(device_problem, 15000)
    window.show()
    if screenshot is None:
        return app.exec_()
    if not opened:
        print(f"bpr-studio gui: {window.last_error}", file=sys.stderr)
        return 2
    if refine and window.current_image() is not None:
        loop = QtCore.QEventLoop()
        window.refineFinished.connect(loop.quit)
        window.refine_current_image()
        if window.refining:
            loop.exec_()
        if window.last_error:
            print(f"bpr-studio gui: {window.last_error}", file=sys.stderr)
    image = window.current_image()
    if image is not None and image.instances:  # show what there is to see: patches, ground truth
        largest = max(range(len(image.instances)), key=lambda j: image.instances[j].source.area)
        window.view_controls.patches.setCurrentText("selected")
        window.view_controls.ground_truth.setChecked(bool(image.ground_truth))
        window.select_instance(largest)
    if refine:  # the Inspect tab then has the most to show: the scatter and the selected instance's patches
        for dock in window.findChildren(QtWidgets.QDockWidget):
            if dock.windowTitle() == "Inspect":
                dock.raise_()
    settle = QtCore.QEventLoop()  # let pending timers run (the Inspect panel redraws after 250 ms)
    QtCore.QTimer.singleShot(800, settle.quit)
    settle.exec_()
    window.grab().save(str(screenshot))
    print(f"saved {screenshot}", file=sys.stderr)
    window.close()
    return 0
