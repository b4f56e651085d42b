"""The window as a new user meets it (issues 13 and 11): first view, zoom at the cursor, progress in
patches, cancelling on close, a device the machine lacks, export defaults and overwrite questions."""

import shutil

import pytest
from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import Qt

from bpr_studio.gui.main_window import MainWindow
from test_gui import SlowRefiner, _press_key, _window


@pytest.fixture
def voc_copy(voc_dir, tmp_path):
    target = tmp_path / "voc"
    shutil.copytree(voc_dir / "data_annotated", target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


@pytest.fixture
def coco_copy(voc_dir, tmp_path):
    target = tmp_path / "coco"
    shutil.copytree(voc_dir / "data_dataset_coco", target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_first_view_selects_an_instance_with_its_patches_and_says_what_to_press(qtbot, voc_copy):
    window = _window(qtbot, voc_copy, lambda config: SlowRefiner())
    assert window.selected == 0
    assert window.view_controls.patches.currentText() == "selected instance"
    assert len(window.canvas.patch_items) > 0
    assert window.view_controls.patch_count.text() == f"{len(window.canvas.patch_items)} patches"
    hint = window.hint_label.text()
    assert all(key in hint for key in ("Ctrl+R", "N next", "A accept", "R reject")) and window.hint_label.isVisible()
    _press_key(qtbot, window, Qt.Key_O)  # the patch overlay key
    assert window.view_controls.patches.currentText() == "off" and not window.canvas.patch_items
    _press_key(qtbot, window, Qt.Key_O)
    assert window.view_controls.patches.currentText() == "selected instance" and window.canvas.patch_items
    window.step_image(1)  # every image opens the same way
    assert window.selected == 0 and window.canvas.patch_items


def _wheel(canvas, pos: QtCore.QPoint, steps: int = 1) -> None:
    event = QtGui.QWheelEvent(QtCore.QPointF(pos), QtCore.QPointF(canvas.viewport().mapToGlobal(pos)),
                              QtCore.QPoint(0, 0), QtCore.QPoint(0, 120 * steps), Qt.NoButton, Qt.NoModifier,
                              Qt.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(canvas.viewport(), event)


@pytest.mark.parametrize("image_point", [(250.0, 180.0), (30.0, 20.0), (480.0, 360.0)])
def test_wheel_zooms_at_the_cursor(qtbot, voc_copy, image_point):
    window = _window(qtbot, voc_copy, lambda config: SlowRefiner())
    window.resize(1400, 900)
    qtbot.waitUntil(lambda: window.canvas.viewport().width() > 400)
    canvas = window.canvas
    pos = canvas.mapFromScene(QtCore.QPointF(*image_point))
    start = canvas.mapToScene(pos)
    scale = canvas.transform().m11()
    for steps in (1, 2, 1, -1):
        _wheel(canvas, pos, steps)
        here = canvas.mapToScene(pos)
        # the image point under the cursor stays under it (to the pixel the cursor is on)
        assert abs(here.x() - start.x()) <= 1.5 / canvas.transform().m11() + 1e-6
        assert abs(here.y() - start.y()) <= 1.5 / canvas.transform().m11() + 1e-6
    assert canvas.transform().m11() == pytest.approx(scale * 1.25 ** 3)
    window.actions["actual_size"].trigger()
    assert canvas.transform().m11() == pytest.approx(1.0)
    window.actions["fit"].trigger()
    assert canvas.transform().m11() == pytest.approx(scale)


def test_progress_counts_patches_and_instances(qtbot, voc_copy):
    window = _window(qtbot, voc_copy, lambda config: SlowRefiner(delay=0.05))
    seen = []
    window.progress_bar.valueChanged.connect(
        lambda value: seen.append((value, window.progress_bar.maximum(), window.progress_label.text())))
    with qtbot.waitSignal(window.refineFinished, timeout=20000):
        window.refine_current_image()
    n = len(window.session.images[0].instances)
    assert (2 * n, 2 * n, f"refining 2011_000003.jpg: {n}/{n} instances") in seen  # SlowRefiner: 2 patches each
    assert (2, 2 * n, f"refining 2011_000003.jpg: 1/{n} instances") in seen
    assert not window.progress_bar.isVisible() and window.statusBar().currentMessage().startswith("refinement finished")


def test_worker_says_loading_model_first(qtbot, voc_copy):
    from bpr_studio.gui.worker import RefineWorker

    window = _window(qtbot, voc_copy, lambda config: SlowRefiner(delay=0.01))
    image = window.session.images[0]
    worker = RefineWorker([window._job(image, range(len(image.instances)))], lambda: SlowRefiner(delay=0.01))
    stages = []
    worker.stage.connect(stages.append)
    worker.run()  # in this thread: the signals arrive in order
    assert stages == ["loading model", "reading 2011_000003.jpg", "refining 2011_000003.jpg"]


def test_closing_during_refinement_cancels_and_says_so(qtbot, voc_copy):
    window = _window(qtbot, voc_copy, lambda config: SlowRefiner(delay=0.3))
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    arrived = []
    window.instanceRefined.connect(lambda i, j: arrived.append(j))
    window.refine_dataset()
    qtbot.waitUntil(lambda: len(arrived) >= 1, timeout=10000)
    with qtbot.waitSignal(window.refineFinished, timeout=10000) as finished:
        window.close()
    assert finished.args == [True] and "cancelling..." in messages
    assert not window.isVisible() and not window.refining
    total = sum(len(image.instances) for image in window.session.images)
    assert len(arrived) < total


def test_a_refiner_that_cannot_be_made_stops_with_one_line(qtbot, voc_copy):
    def factory(config):
        raise RuntimeError("CUDA is not available on this machine (found: CPU)")

    window = _window(qtbot, voc_copy, factory)
    with qtbot.waitSignal(window.refineFinished, timeout=10000):
        window.refine_current_image()
    boxes = [b for b in window.findChildren(QtWidgets.QMessageBox) if b.isVisible()]
    assert len(boxes) == 1
    assert boxes[0].text() == "cannot load the refiner: CUDA is not available on this machine (found: CPU)"
    assert "Traceback" not in boxes[0].text() and not boxes[0].detailedText()
    assert window.statusBar().currentMessage().startswith("refinement stopped: cannot load the refiner: CUDA")
    assert not any(inst.has("refined") for inst in window.session.images[0].instances)


def test_a_missing_device_falls_back_to_the_cpu(monkeypatch):
    from bpr_studio.core import refiner
    from bpr_studio.gui.main_window import checked_device

    real = refiner.pick_device

    def pick(device="auto"):
        if str(device).startswith("cuda"):
            raise ValueError("CUDA is not available on this machine (found: CPU)")
        return real(device)

    monkeypatch.setattr(refiner, "pick_device", pick)
    assert checked_device("cuda") == ("cpu", "CUDA is not available on this machine (found: CPU); refining on the CPU")
    assert checked_device("cpu") == ("cpu", None)
