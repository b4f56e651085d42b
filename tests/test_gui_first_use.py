"""The window as a new user meets it (issues 13 and 11): first view, zoom at the cursor, progress in
patches, cancelling on close, a device the machine lacks, export defaults and overwrite questions."""

import json
import shutil

import pytest
from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import Qt

from bpr_studio.gui.main_window import MainWindow
from test_gui import SlowRefiner, _press_key, _window


@pytest.fixture
def coco_copy(mini_dataset, tmp_path):
    target = tmp_path / "coco"
    shutil.copytree(mini_dataset / "data_dataset_coco", target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def test_first_view_selects_an_instance_with_its_patches_and_says_what_to_press(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    assert window.selected == 0
    assert window.view_controls.patches.currentText() == "selected"
    assert len(window.canvas.patch_items) > 0
    assert window.view_controls.patch_count.text() == f"{len(window.canvas.patch_items)} patches"
    hint = window.hint_label.text()
    assert all(key in hint for key in ("Ctrl+R", "N next", "A accept", "R reject")) and window.hint_label.isVisible()
    _press_key(qtbot, window, Qt.Key_O)  # the patch overlay key
    assert window.view_controls.patches.currentText() == "off" and not window.canvas.patch_items
    _press_key(qtbot, window, Qt.Key_O)
    assert window.view_controls.patches.currentText() == "selected" and window.canvas.patch_items
    window.step_image(1)  # every image opens the same way
    assert window.selected == 0 and window.canvas.patch_items


def _wheel(canvas, pos: QtCore.QPoint, steps: int = 1) -> None:
    event = QtGui.QWheelEvent(QtCore.QPointF(pos), QtCore.QPointF(canvas.viewport().mapToGlobal(pos)),
                              QtCore.QPoint(0, 0), QtCore.QPoint(0, 120 * steps), Qt.NoButton, Qt.NoModifier,
                              Qt.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(canvas.viewport(), event)


@pytest.mark.parametrize("image_point", [(250.0, 180.0), (30.0, 20.0), (480.0, 360.0)])
def test_wheel_zooms_at_the_cursor(qtbot, labelme_copy, image_point):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    window.resize(1400, 900)
    qtbot.waitUntil(lambda: window.canvas.viewport().width() > 400)
    canvas = window.canvas
    pos = canvas.mapFromScene(QtCore.QPointF(*image_point))
    start = canvas.mapToScene(pos)
    scale = canvas.transform().m11()
    gesture = (1, 2, 1, -1, 1, 1, -2, 1)  # whole-pixel scrolling must not add up over a gesture
    for steps in gesture:
        _wheel(canvas, pos, steps)
        here = canvas.mapToScene(pos)
        # the image point under the cursor stays under it (to the pixel the cursor is on)
        assert abs(here.x() - start.x()) <= 1.5 / canvas.transform().m11() + 1e-6
        assert abs(here.y() - start.y()) <= 1.5 / canvas.transform().m11() + 1e-6
    assert canvas.transform().m11() == pytest.approx(scale * 1.25 ** sum(gesture))
    window.actions["actual_size"].trigger()
    assert canvas.transform().m11() == pytest.approx(1.0)
    window.actions["fit"].trigger()
    assert canvas.transform().m11() == pytest.approx(scale)


def test_progress_counts_patches_and_instances(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner(delay=0.05))
    seen = []
    window.progress_bar.valueChanged.connect(
        lambda value: seen.append((value, window.progress_bar.maximum(), window.progress_label.text())))
    with qtbot.waitSignal(window.refineFinished, timeout=20000):
        window.refine_current_image()
    n = len(window.session.images[0].instances)
    assert (2 * n, 2 * n, f"refining scene_1.jpg: {n}/{n} instances") in seen  # SlowRefiner: 2 patches each
    assert (2, 2 * n, f"refining scene_1.jpg: 1/{n} instances") in seen
    assert not window.progress_bar.isVisible() and window.statusBar().currentMessage().startswith("refinement finished")


def test_worker_says_loading_model_first(qtbot, labelme_copy):
    from bpr_studio.gui.worker import RefineWorker

    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner(delay=0.01))
    image = window.session.images[0]
    worker = RefineWorker([window._job(image, range(len(image.instances)))], lambda: SlowRefiner(delay=0.01))
    stages = []
    worker.stage.connect(stages.append)
    worker.run()  # in this thread: the signals arrive in order
    assert stages == ["loading model", "reading scene_1.jpg", "refining scene_1.jpg"]


def test_closing_during_refinement_cancels_and_says_so(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner(delay=0.3))
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


def test_a_refiner_that_cannot_be_made_stops_with_one_line(qtbot, labelme_copy):
    def factory(config):
        raise RuntimeError("CUDA is not available on this machine (found: CPU)")

    window = _window(qtbot, labelme_copy, factory)
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


def _dialog_defaults(window, monkeypatch):
    from bpr_studio.gui.dialogs import ExportDialog

    shown = []
    monkeypatch.setattr(ExportDialog, "exec_", lambda self: shown.append(self) or QtWidgets.QDialog.Rejected)
    window.export_dialog()
    return shown[0]


def test_export_defaults_to_the_datasets_format_a_sibling_folder_and_coarse_for_unreviewed(
        qtbot, labelme_copy, monkeypatch):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    dialog = _dialog_defaults(window, monkeypatch)
    values = dialog.values()
    assert values == {"out": str(labelme_copy.parent / "labelme_export"), "format": "labelme", "unreviewed": "coarse"}
    window.session.accept(0, 0)
    assert window.export_dataset(**values)
    assert sorted(p.name for p in (labelme_copy.parent / "labelme_export").iterdir()) == [
        "scene_1.json", "scene_2.json", "scene_3.json"]
    # the old default put a COCO file inside the labelme folder: reopening now ignores it, unlisted
    assert window.export_dataset(labelme_copy / "export" / "annotations.json", "coco")
    (labelme_copy / "results.json").write_text("[]")
    assert window.open_dataset(labelme_copy)
    names = [window.image_list.item(k).text() for k in range(window.image_list.count())]
    assert not any("unreadable" in name for name in names) and window.session.load_problems == []


def test_images_that_share_a_file_name_are_told_apart(qtbot, mini_dataset, tmp_path):
    """The sample folder holds a labelme and a COCO copy of the same three photographs: each row
    names the folder that tells it apart, and its tooltip the whole path."""
    from bpr_studio.gui.panels import distinct_names

    assert distinct_names(["/d/x/s.jpg", "/d/y/s.jpg", "/d/y/t.jpg", "/e/y/s.jpg"]) == [
        "x/s.jpg", "d/y/s.jpg", "t.jpg", "e/y/s.jpg"]
    both = tmp_path / "both"
    shutil.copytree(mini_dataset, both)
    for path in both.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    window = MainWindow(refiner_factory=SlowRefiner)
    qtbot.addWidget(window)
    assert window.open_dataset(both)
    rows = [window.image_list.item(k) for k in range(window.image_list.count())]
    names = [row.text().split()[0] for row in rows]
    assert len(names) == 6 and len(set(names)) == 6
    assert {"data_annotated/scene_1.jpg", "JPEGImages/scene_1.jpg"} <= set(names)
    assert all(str(both) in row.toolTip() for row in rows)


def test_demo_export_default_is_a_visible_folder_at_home(tmp_path, monkeypatch):
    from bpr_studio import RESOURCES
    from bpr_studio.session.export import DatasetSource, default_export_path

    monkeypatch.setenv("HOME", str(tmp_path))
    demo = DatasetSource(RESOURCES / "demo" / "annotations.json", "coco")
    assert default_export_path(demo) == tmp_path / "bpr_studio_demo_export"


def test_export_asks_before_replacing_a_file(qtbot, coco_copy, monkeypatch):
    window = _window(qtbot, coco_copy / "annotations.json", lambda config: SlowRefiner())
    before = (coco_copy / "annotations.json").read_bytes()
    asked = []
    answer = [QtWidgets.QMessageBox.No]
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *args, **kw: asked.append(args[2]) or answer[0])
    assert not window.export_dataset(coco_copy, "coco")  # the folder's annotations.json is the source itself
    assert len(asked) == 1 and str(coco_copy / "annotations.json") in asked[0]
    assert (coco_copy / "annotations.json").read_bytes() == before
    assert window.statusBar().currentMessage() == "export cancelled: nothing was written"
    assert window.export_dataset(coco_copy / "new.json", "coco") and len(asked) == 1  # a new file: no question
    answer[0] = QtWidgets.QMessageBox.Yes
    assert window.export_dataset(coco_copy, "coco") and len(asked) == 2
    labelme_out = coco_copy.parent / "as_labelme"
    assert window.export_dataset(labelme_out, "labelme") and len(asked) == 2
    answer[0] = QtWidgets.QMessageBox.No
    assert not window.export_dataset(labelme_out, "labelme") and "scene_1.json" in asked[-1]


def test_coco_export_over_its_source_keeps_the_unreadable_images_entries(qtbot, coco_copy, monkeypatch):
    from pycocotools.coco import COCO

    original = json.loads((coco_copy / "annotations.json").read_text())
    (coco_copy / "JPEGImages" / "scene_3.jpg").write_bytes(b"not a jpeg")
    window = _window(qtbot, coco_copy / "annotations.json", lambda config: SlowRefiner())
    assert len(window.session.images) == 2
    window.session.accept(0, 0)
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *args, **kw: QtWidgets.QMessageBox.Yes)
    assert window.export_dataset(coco_copy / "annotations.json", "coco", unreviewed="coarse")
    written = json.loads((coco_copy / "annotations.json").read_text())
    # make_mini_dataset.IMAGES: 3 + 6 + 3 COCO instances; scene_3 holds 2 buses and a car
    assert len(written["images"]) == 3 and len(written["annotations"]) == 12  # 3 / 12 before, not 2 / 9
    lost = [e for e in original["images"] if e["file_name"].endswith("scene_3.jpg")][0]
    assert lost in written["images"]  # its entry unchanged
    theirs = sorted(json.dumps(a, sort_keys=True) for a in original["annotations"] if a["image_id"] == lost["id"])
    ours = sorted(json.dumps(a, sort_keys=True) for a in written["annotations"] if a["image_id"] == lost["id"])
    # scene_3's annotations have the highest ids (10 to 12), none taken by the exported ones: kept as they were
    assert ours == theirs and len(ours) == 3
    assert window.last_export.kept == ["1 image(s) the session could not read (scene_3.jpg) and their "
                                       "3 annotation(s)"]
    boxes = [b for b in window.findChildren(QtWidgets.QMessageBox) if b.isVisible()]
    assert any("Kept unchanged" in b.text() and "scene_3.jpg" in b.text() for b in boxes)
    COCO(str(coco_copy / "annotations.json"))  # pycocotools reads it
    ids = [a["id"] for a in written["annotations"]]
    assert len(set(ids)) == len(ids)


def test_export_says_what_it_leaves_out(qtbot, labelme_copy, tmp_path):
    (labelme_copy / "scene_3.json").write_text('{"shapes": [oops')
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    assert window.export_dataset(tmp_path / "out", "labelme", unreviewed="omit")
    report = window.last_export
    n = sum(len(image.instances) for image in window.session.images)
    assert report.left_out == ["1 file(s) that could not be read when the dataset was opened: scene_3.json",
                               f"{n} unreviewed instance(s)"]
    boxes = [b for b in window.findChildren(QtWidgets.QMessageBox) if b.isVisible() and "Left out" in b.text()]
    assert boxes and "scene_3.json" in boxes[0].text()


def test_screenshot_leaves_no_session_file_unless_asked(labelme_copy, tmp_path, qapp):
    from bpr_studio.cli import main

    before = sorted(p.name for p in labelme_copy.iterdir())
    out = tmp_path / "shot.png"
    assert main(["gui", str(labelme_copy), "--screenshot", str(out), "--size", "800x500"]) == 0
    assert out.stat().st_size > 10000 and sorted(p.name for p in labelme_copy.iterdir()) == before
    asked = tmp_path / "asked.bprsession"
    assert main(["gui", str(labelme_copy), "--screenshot", str(out), "--session", str(asked)]) == 0
    assert asked.is_file() and sorted(p.name for p in labelme_copy.iterdir()) == before


def test_reopening_says_the_session_was_restored_and_returns_to_the_last_image(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    window.show_image(1)
    window.accept_selected()
    window.close()
    again = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    n = sum(len(image.instances) for image in again.session.images)
    assert again.image_index == 1
    assert again.statusBar().currentMessage() == f"restored session: 1 of {n} reviewed, back at image 2 of 3"


def test_a_message_put_up_before_the_window_shows_is_not_drawn_over_by_the_hint(qtbot, labelme_copy):
    """bpr-studio gui opens the dataset (and says the session was restored) before the window shows."""
    first = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    first.accept_selected()
    first.close()
    window = MainWindow(refiner_factory=lambda config: SlowRefiner())
    qtbot.addWidget(window)
    assert window.open_dataset(labelme_copy)
    window.show()
    qtbot.waitExposed(window)
    assert window.statusBar().currentMessage().startswith("restored session")
    assert not window.hint_label.isVisible()
    window.statusBar().clearMessage()  # as when the message times out
    assert window.hint_label.isVisible()


def test_toolbar_icons_tooltips_and_help(qtbot, labelme_copy):
    window = _window(qtbot, labelme_copy, lambda config: SlowRefiner())
    tools = [a for a in window.toolbar.actions() if not a.isSeparator() and a.text()]
    assert all(not a.icon().isNull() for a in tools)
    assert window.toolbar.toolButtonStyle() == Qt.ToolButtonTextBesideIcon
    assert window.actions["refine_image"].toolTip() == "Refine image (Ctrl+R)"
    assert window.actions["accept"].toolTip() == "Accept (A)"
    keys = dict((text, key) for key, text in window.key_table())
    assert keys["Accept"] == "A" and keys["Boundary patches on / off"] == "O" and "wheel" in dict(window.key_table())
    dialog = window.show_keys()
    assert dialog.isVisible() and dialog.findChild(QtWidgets.QTableWidget).rowCount() == len(window.key_table())
    assert [a.text() for a in window.menuBar().actions()][-1] == "&Help"
    # the Inspect dock is a tab beside the instance list, which stays in front
    inspect = [d for d in window.findChildren(QtWidgets.QDockWidget) if d.windowTitle() == "Inspect"][0]
    assert window.tabifiedDockWidgets(window.instance_dock) == [inspect]


def test_the_window_layout_is_remembered_and_can_be_reset(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "layout.ini"), QtCore.QSettings.IniFormat)
    first = MainWindow(layout_settings=settings)
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    first.resize(1400, 700)
    first.image_dock.close()  # the user closes a panel and narrows the instance list
    first.resizeDocks([first.instance_dock], [300], Qt.Horizontal)
    qtbot.waitUntil(lambda: first.instance_dock.width() < 340, timeout=2000)  # 378 by default
    width = first.instance_dock.width()
    first.close()

    second = MainWindow(layout_settings=settings)
    qtbot.addWidget(second)
    second.show()
    qtbot.waitExposed(second)
    assert (second.width(), second.height()) == (1400, 700)
    assert not second.image_dock.isVisible() and second.instance_dock.width() == width
    panels = next(a.menu() for a in second.menus["&View"].actions() if a.menu() is not None)
    images = next(a for a in panels.actions() if a.text() == "Images")
    assert not images.isChecked()  # View > Panels brings it back
    second.actions["reset_layout"].trigger()
    assert second.image_dock.isVisible() and second.instance_dock.width() > width
    second.close()

    settings.setValue("window/state", second.saveState(MainWindow.LAYOUT_VERSION + 1))  # docks of another version
    third = MainWindow(layout_settings=settings)
    qtbot.addWidget(third)
    third.show()
    qtbot.waitExposed(third)
    assert third.image_dock.isVisible() and third.instance_dock.width() > width  # the default layout
    unremembered = MainWindow()
    assert unremembered.layout_settings is None  # tests and screenshots leave the user's settings alone


def test_a_laptop_screen_leaves_the_canvas_about_half_the_width(qtbot):
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1280, 720)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.canvas.width() >= 0.45 * window.width(), timeout=3000)  # 36% at stop 19
