"""The window, offscreen: refine through the worker, review, touch up, undo, export, reopen, and bad input."""

import time

import numpy as np
import pytest
import torch
from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import Qt

from bpr_studio.core.config import RefinerConfig
from bpr_studio.core.refiner import RefineCancelled, RefinedInstance
from bpr_studio.gui.main_window import MainWindow
from bpr_studio.gui.worker import RefineWorker, start_worker


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A randomly initialised HRNetV2-W18-Small weights file (the refinement output is meaningless, the plumbing is real)."""
    from bpr_studio.core.model import build_model, save_weights

    torch.manual_seed(0)
    return save_weights(tmp_path_factory.mktemp("weights") / "tiny.pt", build_model("hr18s"), "hr18s")


class SlowRefiner:
    """Refiner stand-in: each instance takes ``delay`` seconds (polling should_stop) and grows by one pixel."""

    device_name = "CPU"

    def __init__(self, delay=0.15, fail=False):
        self.delay, self.fail = delay, fail

    def refine(self, image, masks, on_instance=None, should_stop=None, on_batch=None):
        if self.fail:
            raise RuntimeError("boom: the refiner broke")
        out = []
        if on_batch is not None:
            on_batch(0, 2 * len(masks))  # two patches per instance
        for k, mask in enumerate(masks):
            end = time.monotonic() + self.delay
            while time.monotonic() < end:
                if should_stop is not None and should_stop():
                    raise RefineCancelled("stopped")
                time.sleep(0.01)
            grown = mask.copy()
            grown[1:] |= mask[:-1]
            result = RefinedInstance(k, grown, np.zeros((0, 4), np.int32), np.zeros((0, 64, 64), np.float32))
            out.append(result)
            if on_instance is not None:
                on_instance(result)
            if on_batch is not None:
                on_batch(2 * k + 2, 2 * len(masks))
        return out


def _window(qtbot, path, factory, **kwargs):
    window = MainWindow(refiner_factory=factory, **kwargs)
    qtbot.addWidget(window)
    window.resize(1000, 700)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_dataset(path)
    return window


def _press_key(qtbot, window, key, modifier=Qt.NoModifier):
    QtWidgets.QApplication.setActiveWindow(window)  # shortcuts need an active window; offscreen has no window manager
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, key, modifier)


def _drag(qtbot, canvas, points):
    """Press, move through and release the left button at image pixel positions."""
    viewport = canvas.viewport()
    positions = [canvas.mapFromScene(QtCore.QPointF(x, y)) for x, y in points]
    qtbot.mousePress(viewport, Qt.LeftButton, pos=positions[0])
    for pos in positions[1:]:  # QTest's mouseMove moves the cursor only: send the move itself
        QtWidgets.QApplication.sendEvent(viewport, QtGui.QMouseEvent(
            QtCore.QEvent.MouseMove, QtCore.QPointF(pos), Qt.LeftButton, Qt.LeftButton, Qt.NoModifier))
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=positions[-1])


def test_inspect_gallery_of_the_shown_image_uses_the_window_pixels(qtbot, labelme_copy, tiny_weights, monkeypatch):
    """Selecting a refined instance with the Inspect dock in front shows its patch gallery from the
    pixels the window already decoded (a large photograph took 0.3 s to decode again per selection)."""
    from bpr_studio.core.refiner import Refiner
    from bpr_studio.gui import inspect_panel
    from bpr_studio.gui.inspect_panel import InspectPanel

    def factory(config):
        return Refiner(RefinerConfig(input_size=32, batch_size=64, min_size=0), weights=tiny_weights, device="cpu")

    window = _window(qtbot, labelme_copy, factory)
    with qtbot.waitSignal(window.refineFinished, timeout=60000):
        window.refine_current_image()
    inspect = [d for d in window.findChildren(QtWidgets.QDockWidget) if d.windowTitle() == "Inspect"][0]
    inspect.raise_()
    panel = window.findChild(InspectPanel)
    qtbot.waitUntil(panel.isVisible, timeout=5000)
    monkeypatch.setattr(inspect_panel, "read_image", lambda *a: pytest.fail("the gallery decoded the image again"))
    j = next(j for j, inst in enumerate(window.current_image().instances) if len(inst.boxes))
    window.select_instance(j)
    qtbot.waitUntil(lambda: len(panel.gallery.rows) == len(window.current_image().instances[j].boxes), timeout=5000)
    assert window.image_pixels(window.image_index) is not None and window.image_pixels(window.image_index + 1) is None


def test_refine_review_touch_up_export_reopen(qtbot, labelme_copy, tiny_weights, tmp_path):
    from pycocotools.coco import COCO

    from bpr_studio.core.refiner import Refiner

    def factory(config):
        return Refiner(RefinerConfig(input_size=32, batch_size=64), weights=tiny_weights, device="cpu")

    window = _window(qtbot, labelme_copy, factory)
    refined = []
    window.instanceRefined.connect(lambda i, j: refined.append((i, j)))
    with qtbot.waitSignal(window.refineFinished, timeout=60000) as finished:
        window.refine_current_image()
    assert finished.args == [False]
    image = window.session.images[0]
    assert sorted(refined) == [(0, j) for j in range(len(image.instances))]
    assert all(inst.has("refined") for inst in image.instances)
    assert window.device_label.text() == "device: CPU"
    small = [j for j, inst in enumerate(image.instances) if len(inst.boxes) == 0]
    # scene_1 (make_mini_dataset.IMAGES): longer sides 240, 270, 60 (the bottle) and 160 px: only the bottle is
    # shorter than the min size, kept coarse and said so
    assert small == [2]
    assert window.statusBar().currentMessage().endswith("; 1 under the min size (96 px) kept coarse")

    window.auto_advance = False
    window.select_instance(0)
    _press_key(qtbot, window, Qt.Key_A)
    window.select_instance(1)
    _press_key(qtbot, window, Qt.Key_R)
    assert [image.instances[0].status, image.instances[1].status] == ["accepted", "rejected"]

    # a brush stroke on instance 2 changes the mask along the stroke and nowhere else
    j = 2
    inst = image.instances[j]
    window.select_instance(j)
    window.set_tool("brush")
    window.brush_spin.setValue(6)
    before = inst.final.copy()
    x, y, w, h = inst.source.bbox
    stroke = [(x + w / 2, y - 20.0), (x + w / 2 + 15, y - 20.0), (x + w / 2 + 30, y - 18.0)]
    _drag(qtbot, window.canvas, stroke)
    after = inst.final.copy()
    changed = before ^ after
    assert changed.sum() > 100 and inst.status == "edited"
    yy, xx = np.nonzero(changed)
    seg = np.array(stroke)
    near = np.min(np.hypot(xx[:, None] - seg[None, :, 0], yy[:, None] - seg[None, :, 1]), axis=1)
    ax, ay = seg[:-1, None, 0], seg[:-1, None, 1]
    dx, dy = seg[1:, None, 0] - ax, seg[1:, None, 1] - ay
    t = np.clip(((xx[None] - ax) * dx + (yy[None] - ay) * dy) / (dx * dx + dy * dy), 0, 1)
    dist = np.hypot(xx[None] - ax - t * dx, yy[None] - ay - t * dy).min(axis=0)
    # radius 6, the brush's odd line width, and the points rounded to screen pixels: half a screen pixel
    # each way is 0.71 / scale image pixels (the view is scaled to fit the canvas)
    slack = 1 + 0.5 * np.sqrt(2) / window.canvas.transform().m11()
    assert np.all(np.minimum(dist, near) <= 6 + slack), "pixels changed away from the stroke"

    _press_key(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
    assert np.array_equal(inst.final, before)
    _press_key(qtbot, window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert np.array_equal(inst.final, after)

    out = tmp_path / "export" / "annotations.json"
    assert window.export_dataset(out, "coco", unreviewed="refined")
    coco = COCO(str(out))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == sum(len(im.instances) for im in window.session.images)
    first = coco.imgs[sorted(coco.imgs)[0]]
    masks = [coco.annToMask(a).astype(bool) for a in anns if a["image_id"] == first["id"]]
    assert any(np.array_equal(m, after) for m in masks)
    assert any(np.array_equal(m, image.instances[1].coarse) for m in masks)  # rejected: coarse

    window.close()
    again = _window(qtbot, labelme_copy, factory)
    image = again.session.images[0]
    assert [inst.status for inst in image.instances[:3]] == ["accepted", "rejected", "edited"]
    assert np.array_equal(image.instances[2].final, after)
    again.close()


def test_window_stays_responsive_while_refining_and_cancel_stops(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner(delay=0.15))
    ticks = []
    timer = QtCore.QTimer(window, interval=10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    arrived = []
    window.instanceRefined.connect(lambda i, j: arrived.append((i, j)))
    window.refine_dataset()
    assert window.refining and window.cancel_button.isVisibleTo(window)
    qtbot.waitUntil(lambda: len(arrived) >= 2 and len(ticks) >= 10, timeout=10000)
    assert window.refining  # the event loop kept running timers during refinement (not only after it)
    with qtbot.waitSignal(window.refineFinished, timeout=5000) as finished:
        window.cancel_button.click()
    assert finished.args == [True]
    total = sum(len(im.instances) for im in window.session.images)
    assert len(arrived) < total and not window.refining and not window.progress_bar.isVisibleTo(window)
    # results that arrived are in the session, ready to review
    i, j = arrived[0]
    assert window.session.images[i].instances[j].has("refined")


def test_closing_while_the_model_loads_waits_for_the_worker_thread(qtbot, labelme_copy):
    """The first start's export cannot be interrupted: closing the window then waits for it (and the
    cancelled run) to end, so that deleting the window never destroys a running QThread (Qt aborts)."""
    def slow_factory(config):
        time.sleep(12)  # longer than the 10 s the window waits when it switches datasets
        return SlowRefiner(delay=0.05)

    window = _window(qtbot, labelme_copy, slow_factory)
    window.refine_dataset()
    thread = window.refinement._thread
    assert window.refining and thread.isRunning()
    window.close()
    assert not window.refining and thread.isFinished()  # conftest then deletes the window at once


def test_worker_thread_ends_while_the_gui_thread_blocks(qtbot):
    """A finished worker ends its thread without the GUI thread's event loop: closing the window
    blocks in QThread.wait(), and a quit queued to the GUI thread would never arrive (a deadlock)."""
    owner, worker = QtCore.QObject(), RefineWorker([], lambda: SlowRefiner())
    thread = start_worker(worker, owner)
    assert thread.wait(10000)  # no events processed meanwhile


def test_worker_exception_becomes_error_dialog(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner(fail=True))
    with qtbot.waitSignal(window.refineFinished, timeout=10000):
        window.refine_current_image()
    boxes = [b for b in window.findChildren(QtWidgets.QMessageBox) if b.isVisible()]
    assert boxes and "boom" in boxes[0].text()
    boxes[0].close()
    window.step_image(1)  # the window goes on
    assert window.image_index == 1


def test_unreadable_files_are_listed_and_the_rest_opens(qtbot, labelme_copy):
    (labelme_copy / "scene_2.jpg").write_bytes(b"this is not a jpeg")
    (labelme_copy / "scene_3.json").write_text('{"shapes": [oops')
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    names = [window.image_list.item(k).text() for k in range(window.image_list.count())]
    assert any("scene_2.jpg" in n and "unreadable" in n for n in names)
    assert any("scene_3.json" in n and "unreadable" in n for n in names)
    assert [im.path.name for im in window.session.images] == ["scene_1.jpg"]
    assert "scene_2.jpg" in window.last_error and "scene_3.json" in window.last_error
    window.show_image(0)
    assert window.canvas.image_item.pixmap().width() > 0


def test_image_of_another_size_than_its_annotations(qtbot, labelme_copy):
    import cv2

    def shrink(path):
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (100, 80)))

    shrink(labelme_copy / "scene_1.jpg")  # before opening: the io layer leaves it out, the window lists it
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    assert "scene_1.jpg" in window.last_error and "100x80" in window.last_error
    assert [im.path.name for im in window.session.images] == ["scene_2.jpg", "scene_3.jpg"]
    shrink(labelme_copy / "scene_3.jpg")  # after opening: found when the image is shown
    window.show_image(1)
    assert "unreadable" in window.image_list.item(1).text()
    assert "scene_3.jpg" in window.session.images[1].error and "100x80" in window.session.images[1].error
    window.show_image(0)
    assert window.canvas.image_item.pixmap().width() > 0


def test_bad_dataset_keeps_the_open_session(qtbot, labelme_copy, tmp_path):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    session = window.session
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert not window.open_dataset(bad)
    assert window.session is session and "bad.json" in window.last_error


def test_patch_preview_follows_the_controls(qtbot, labelme_copy):
    configs = []  # what the refiner factory was given
    window = _window(qtbot, labelme_copy, lambda config: configs.append(config) or SlowRefiner(delay=0.01))
    window.view_controls.patches.setCurrentText("selected")
    window.select_instance(0)
    few = len(window.canvas.patch_items)
    window.view_controls.nms_thr.setValue(0.6)
    assert len(window.canvas.patch_items) > few > 0
    window.view_controls.patch_size.setValue(32)
    assert window.config.patch_size == 32 and window.config.nms_thr == 0.6
    window.view_controls.min_size.setValue(4096)  # larger than the photograph: every instance kept coarse
    assert window.config.min_size == 4096 and len(window.canvas.patch_items) == 0
    assert window.view_controls.patch_count.text() == "0 patches"
    assert window.config.attached_only
    window.view_controls.attached_only.setChecked(False)
    assert not window.config.attached_only
    window.view_controls.margin.setValue(0.15)
    assert window.config.margin == 0.15
    assert window.config.mirror and window.view_controls.mirror.isChecked()  # on by default
    window.view_controls.mirror.setChecked(False)
    assert not window.config.mirror
    assert window.view_controls.max_shift.text() == "no limit" and window.config.max_shift == 0
    window.view_controls.max_shift.setValue(3)
    assert window.config.max_shift == 3
    assert window.view_controls.snap.value() == 2 and window.config.snap == 2  # the default
    window.view_controls.snap.setValue(0)
    assert window.view_controls.snap.text() == "off" and window.config.snap == 0
    window.refine_current_image()  # the refinement gets the window's settings
    qtbot.waitUntil(lambda: not window.refining, timeout=20000)
    assert configs[-1].margin == 0.15 and not configs[-1].attached_only and configs[-1].min_size == 4096
    assert not configs[-1].mirror and configs[-1].max_shift == 3 and configs[-1].snap == 0


def test_review_keys_walk_through_instances_and_images(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    selections = []
    window.instanceSelected.connect(lambda i, j: selections.append((i, j)))
    assert (window.image_index, window.selected) == (0, 0)  # the first view selects the first unreviewed one
    _press_key(qtbot, window, Qt.Key_N)
    assert (window.image_index, window.selected) == (0, 1)
    _press_key(qtbot, window, Qt.Key_A)  # accepts and moves on to the next unreviewed instance
    assert window.session.images[0].instances[1].status == "accepted" and window.selected == 2
    assert selections == [(0, 1), (0, 2)]  # the Inspect dock follows these
    _press_key(qtbot, window, Qt.Key_D)
    assert window.image_index == 1
    _press_key(qtbot, window, Qt.Key_D, Qt.ShiftModifier)
    assert window.image_index == 0
    _press_key(qtbot, window, Qt.Key_V)
    assert window.view_controls.mode.currentText() == "refined"
    _press_key(qtbot, window, Qt.Key_X)
    assert window.view_controls.diff.isChecked()
    assert "1/4 reviewed" in window.review_label.text()  # scene_1: 2 persons, a bottle, an __ignore__ region


def test_screenshot_command(labelme_copy, tmp_path, qapp):
    from bpr_studio.cli import main

    out = tmp_path / "shot.png"
    assert main(["gui", str(labelme_copy), "--screenshot", str(out), "--size", "800x500"]) == 0
    assert out.stat().st_size > 10000


def test_re_refine_a_touch_up_and_polygon_tool(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner(delay=0.0))
    image = window.session.images[0]
    inst = image.instances[0]
    window.select_instance(0)
    window.set_tool("polygon")
    x, y, w, h = inst.source.bbox
    corners = [(x - 30, y - 30), (x - 10, y - 30), (x - 10, y - 10)]
    for corner in corners:
        _drag(qtbot, window.canvas, [corner])  # a click adds a point
    assert len(window.canvas.polygon_points) == 3
    before = inst.final.copy()
    _press_key(qtbot, window, Qt.Key_Return)
    assert inst.status == "edited" and inst.final[int(y - 25), int(x - 20)] and not before[int(y - 25), int(x - 20)]
    touched = inst.final.copy()
    with qtbot.waitSignal(window.refineFinished, timeout=10000):
        _press_key(qtbot, window, Qt.Key_F)  # re-refine the touch-up: the fake refiner grows it by one row
    grown = touched.copy()
    grown[1:] |= touched[:-1]
    assert np.array_equal(inst.final, grown) and inst.status == "edited" and not inst.has("refined")
    window.undo()
    assert np.array_equal(inst.final, touched)


def test_image_unreadable_during_refinement_is_skipped(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner(delay=0.0))
    (labelme_copy / "scene_3.jpg").write_bytes(b"broken after opening")
    with qtbot.waitSignal(window.refineFinished, timeout=10000):
        window.refine_dataset()
    images = window.session.images
    assert all(inst.has("refined") for im in images[:2] for inst in im.instances)
    assert not any(inst.has("refined") for inst in images[2].instances)
    assert "unreadable" in window.image_list.item(2).text()
    assert "scene_3.jpg" in window.image_list.item(2).toolTip()


def test_demo_opens_with_its_ground_truth(tmp_path, qapp, monkeypatch):
    from bpr_studio.cli import main
    from bpr_studio.gui.app import DEMO, demo_session_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert demo_session_path().is_relative_to(tmp_path / "data")  # never inside the package
    out = tmp_path / "demo.png"
    assert main(["gui", "--screenshot", str(out), "--size", "800x500"]) == 0
    assert out.stat().st_size > 10000 and not demo_session_path().exists()  # a screenshot leaves nothing behind
    assert sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file()) < 1_000_000


def test_open_and_export_dialogs_give_the_window_its_arguments(qtbot, labelme_copy, tmp_path):
    from bpr_studio.gui.dialogs import ExportDialog, OpenDialog

    opener = OpenDialog()
    qtbot.addWidget(opener)
    opener.path.setText(str(labelme_copy))
    opener.format.setCurrentText("labelme")
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    assert window.open_dataset(**opener.values())
    exporter = ExportDialog(default_out=str(tmp_path / "out"))
    qtbot.addWidget(exporter)
    exporter.format.setCurrentText("labelme")
    exporter.unreviewed.setCurrentIndex(exporter.unreviewed.findData("omit"))
    window.session.accept(0, 0)
    assert window.export_dataset(**exporter.values())
    from bpr_studio.io.formats import load_dataset

    exported = load_dataset(tmp_path / "out", format="labelme")
    assert sum(len(rec.instances) for rec in exported.images) == 1  # unreviewed ones left out
    first = window.session.images[0]
    only = [rec for rec in exported.images if rec.instances][0]
    assert np.array_equal(only.instances[0].mask, first.instances[0].final)


def test_a_stroke_redraws_its_window_only_and_undo_restores(qtbot, labelme_copy):
    """A brush stroke drawn on the canvas changes exactly the pixels under the brush, its session event
    carries the stroke's window, the layers redrawn there look as a full redraw does, the patch
    preview follows in the background, and undo restores the mask exactly."""
    from bpr_studio.session.paint import stroke_window

    window = _window(qtbot, labelme_copy, SlowRefiner)
    window.resize(1000, 700)
    image = window.session.images[0]
    j = 1
    inst = image.instances[j]
    window.select_instance(j)
    window.set_tool("brush")
    window.brush_spin.setValue(5)
    events = []
    window.session.events.changed.connect(lambda e: e.kind == "mask" and events.append(e))
    x, y, w, h = inst.source.bbox
    strokes = [([(x + w / 2, y - 8.0), (x + w / 2 + 25, y - 6.0)], False),  # first: creates the edit
               ([(x + w / 2 + 10, y + 4.0), (x + w / 2 + 30, y + 2.0)], True),
               ([(x + w / 3, y + h / 2), (x + w / 3 + 20, y + h / 2 + 5)], True),
               ([(x + w / 2, y - 20.0), (x + w / 2 + 5, y - 30.0)], False)]
    masks = [inst.final.copy()]
    drawn_points = []
    window.canvas.strokeFinished.connect(lambda points, erase: drawn_points.append(points))
    for points, erase in strokes:
        window.set_tool("eraser" if erase else "brush")
        events.clear()
        _drag(qtbot, window.canvas, points)
        assert len(drawn_points[-1]) == len(points)
        box, covered = stroke_window(image.shape, drawn_points[-1], window.canvas.brush_radius)
        expected = masks[-1].copy()
        x0, y0, x1, y1 = box
        expected[y0:y1, x0:x1] = expected[y0:y1, x0:x1] & ~covered if erase else expected[y0:y1, x0:x1] | covered
        assert np.array_equal(inst.final, expected)
        assert [(e.instance, e.window) for e in events] == [(j, box)]
        masks.append(inst.final.copy())
    qtbot.waitUntil(lambda: not window._patch_preview.busy and not window._patch_timer.isActive(), timeout=10000)
    drawn = window.canvas.grab().toImage()
    preview = [tuple(item.rect().getCoords()) for item in window.canvas.patch_items]
    window._rebuild_overlay()
    window.refresh_patches()
    assert window.canvas.grab().toImage() == drawn
    assert [tuple(item.rect().getCoords()) for item in window.canvas.patch_items] == preview
    for mask in reversed(masks[:-1]):
        _press_key(qtbot, window, Qt.Key_Z, Qt.ControlModifier)
        assert np.array_equal(inst.final, mask)
    assert not inst.has("edited")


def test_keys_come_from_the_shortcuts_table(qtbot):
    """Actions, the Help table, the start hint and the View panel's labels all take their keys from gui.shortcuts."""
    from bpr_studio.gui import shortcuts

    window = MainWindow()
    qtbot.addWidget(window)
    for name, action in window.actions.items():
        if name in shortcuts.SHORTCUTS:
            assert [k.toString() for k in action.shortcuts()] == \
                [QtGui.QKeySequence(k).toString() for k in shortcuts.keys(name)], name
    assert ("R", "Reject (keep coarse)") in window.key_table()
    assert shortcuts.start_hint().startswith("Ctrl+R refines the image · N next unreviewed")
    layout = window.view_controls.layout()
    labels = [layout.itemAt(i).widget().text() for i in range(layout.count())
              if isinstance(layout.itemAt(i).widget(), QtWidgets.QLabel)]
    assert "Masks (V)" in labels and "Patches (O)" in labels
