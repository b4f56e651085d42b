"""The Inspect dock on a stand-in window: empty state, scatter clicks, ranking, gallery clicks, live updates."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PyQt5 import QtCore, QtWidgets

from bpr_studio.core.boundary import mask_bbox
from bpr_studio.core.rle import encode_rle
from bpr_studio.gui.inspect_panel import EMPTY_TEXT, install_inspect_panel
from bpr_studio.io.dataset import Instance
from bpr_studio.session.events import SessionEvent, SessionEvents
from test_inspect import make_scene


class StandInWindow(QtWidgets.QMainWindow):
    """The MainWindow hooks the panel uses (docs/ARCHITECTURE.md), recording the calls."""

    instanceRefined = QtCore.pyqtSignal(int, int)
    imageChanged = QtCore.pyqtSignal(int)
    instanceSelected = QtCore.pyqtSignal(int, int)

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.opened, self.centred = [], []
        self.setCentralWidget(QtWidgets.QLabel("canvas"))

    def add_panel(self, widget, title):
        dock = QtWidgets.QDockWidget(title, self)
        dock.setWidget(widget)
        self.addDockWidget(QtCore.Qt.RightDockWidgetArea, dock)
        return dock

    def open_instance(self, image_index, instance_index):
        self.opened.append((image_index, instance_index))

    def center_canvas_on(self, x, y):
        self.centred.append((x, y))

    def image_pixels(self, image_index):
        return None  # the panel reads the image itself


class StandInInstance(SimpleNamespace):
    """What the Inspect model reads of a session instance (session.model), over arrays: category_id,
    coarse, refined, boxes, probs, has, rle, crop, source.size."""

    def has(self, name):
        return getattr(self, name) is not None

    def rle(self, name):
        return None if getattr(self, name) is None else encode_rle(getattr(self, name))

    def crop(self, name):
        mask = getattr(self, name)
        box = None if mask is None else mask_bbox(mask)
        return None if box is None else (box[0], box[1], mask[box[1]:box[3], box[0]:box[2]])

    @property
    def source(self):
        return SimpleNamespace(size=self.coarse.shape)


def make_session(tmp_path, scene, ground_truth=True, refined=True):
    """A session-shaped object (images[i].instances[j], .ground_truth, .record.path, .events) over the scene."""
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    instances = [
        StandInInstance(category_id=c, coarse=scene.coarse[j], refined=scene.refined[j] if refined else None,
                        boxes=scene.boxes[j] if refined else None, probs=scene.probs[j] if refined else None)
        for j, c in enumerate(scene.categories)
    ]
    gt = [Instance.from_mask(m, c) for m, c in zip(scene.gt, scene.gt_categories)] if ground_truth else None
    image = SimpleNamespace(record=SimpleNamespace(path=path), ground_truth=gt, instances=instances,
                            release=lambda: None)
    return SimpleNamespace(images=[image], current=0, events=SessionEvents())


@pytest.fixture(scope="module")
def scene():
    return make_scene()


def open_window(qtbot, session):
    window = StandInWindow(session)
    qtbot.addWidget(window)
    panel = install_inspect_panel(window)
    window.resize(900, 900)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: panel.pending == 0, timeout=5000)
    return window, panel


@pytest.mark.parametrize("session", [None, "unrefined"])
def test_empty_state_without_ground_truth_or_refinement(qtbot, tmp_path, scene, session):
    if session is not None:
        session = make_session(tmp_path, scene, ground_truth=False, refined=False)
    window, panel = open_window(qtbot, session)
    assert panel.stack.currentWidget() is panel.empty_label and panel.empty_label.text() == EMPTY_TEXT
    assert window.findChild(QtWidgets.QDockWidget).windowTitle() == "Inspect"


def test_scatter_click_opens_instance_and_tile_click_centres_patch(qtbot, tmp_path, scene):
    window, panel = open_window(qtbot, make_session(tmp_path, scene))
    assert panel.stack.currentIndex() == 1
    offsets = panel.scatter.ax.collections[0].get_offsets()
    expected = [[panel.records[(0, j)].iou_before, panel.records[(0, j)].iou_after] for j in range(2)]
    np.testing.assert_allclose(offsets, expected)
    panel.scatter.draw()
    x, y = panel.scatter.display_point(0)  # the bad instance, below the diagonal
    ratio = panel.scatter.device_pixel_ratio
    dot = QtCore.QPoint(round(x / ratio), round(panel.scatter.height() - y / ratio))
    qtbot.mouseMove(panel.scatter, dot)
    qtbot.waitUntil(lambda: "scene.png #0" in QtWidgets.QToolTip.text(), timeout=2000)
    qtbot.mouseClick(panel.scatter, QtCore.Qt.LeftButton, pos=dot)
    assert window.opened == [(0, 0)]
    gallery = panel.gallery
    assert len(gallery.rows) == len(scene.boxes[0]) and len(gallery.tiles[0]) == 5
    changes = [row.patch.iou_change for row in gallery.rows]
    assert changes == sorted(changes)  # the worst patch is the first row
    qtbot.mouseClick(gallery.tiles[0][2], QtCore.Qt.LeftButton)
    x0, y0, x1, y1 = gallery.rows[0].patch.box
    assert window.centred == [((x0 + x1) / 2, (y0 + y1) / 2)]


def test_ranking_drives_the_window_selection(qtbot, tmp_path, scene):
    window, panel = open_window(qtbot, make_session(tmp_path, scene))
    assert panel.instance_order(0, "worst_change", "got_worse") == [0]
    assert panel.instance_order(0, "image_order", "small") == [1]
    panel.records.pop((0, 0))
    assert panel.instance_order(0, "most_uncertain") == [1, 0]  # unmeasured last
    panel.refresh()
    qtbot.waitUntil(lambda: panel.pending == 0, timeout=5000)
    panel.set_ordering("worst_change", "got_worse")
    assert panel.ranked.count() == 1
    panel.set_ordering("most_uncertain", "all")
    assert [panel.ranked.item(r).data(QtCore.Qt.UserRole) for r in range(2)] == [(0, 0), (0, 1)]
    item = panel.ranked.item(1)
    qtbot.mouseClick(panel.ranked.viewport(), QtCore.Qt.LeftButton, pos=panel.ranked.visualItemRect(item).center())
    assert window.opened == [(0, 1)]
    assert len(panel.gallery.rows) == len(scene.boxes[1])


def test_gallery_follows_the_window_selection(qtbot, tmp_path, scene):
    window, panel = open_window(qtbot, make_session(tmp_path, scene))
    window.instanceSelected.emit(0, 1)
    assert panel.selected == (0, 1) and len(panel.gallery.rows) == len(scene.boxes[1])
    assert window.opened == []  # following the window does not move it again


def test_the_session_s_refinement_event_updates_the_figures(qtbot, tmp_path, scene):
    session = make_session(tmp_path, scene, ground_truth=True, refined=False)
    window, panel = open_window(qtbot, session)
    assert panel.stack.currentIndex() == 1  # ground truth alone is something to show
    assert panel.records[(0, 0)].iou_after is None
    panel.select_instance(0, 0)
    assert panel.gallery.rows == []  # "not refined yet"
    inst = session.images[0].instances[0]
    inst.refined, inst.boxes, inst.probs = scene.refined[0], scene.boxes[0], scene.probs[0]
    session.events.changed.emit(SessionEvent("refined", 0, 0))  # as Session.set_refined does
    qtbot.waitUntil(lambda: len(panel.scatter.points) == 1, timeout=2000)
    assert panel.records[(0, 0)].iou_change < 0
    assert len(panel.gallery.rows) == len(scene.boxes[0])


def test_works_over_the_real_session(qtbot, tmp_path, scene):
    from bpr_studio.io.dataset import Dataset, ImageRecord
    from bpr_studio.session.model import Session

    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    h, w = scene.coarse.shape[1:]
    predictions = [Instance.from_mask(m, c, score=0.9) for m, c in zip(scene.coarse, scene.categories)]
    truth = [Instance.from_mask(m, c) for m, c in zip(scene.gt, scene.gt_categories)]
    session = Session(Dataset([ImageRecord(path, w, h, predictions, 1)], {1: "ellipse", 2: "disk"}),
                      ground_truth=Dataset([ImageRecord(path, w, h, truth, 1)], {1: "ellipse", 2: "disk"}))
    for j in range(2):
        session.set_refined(0, j, scene.refined[j], scene.boxes[j], scene.probs[j])
    window, panel = open_window(qtbot, session)
    assert [panel.ranked.item(r).data(QtCore.Qt.UserRole) for r in range(2)] == [(0, 0), (0, 1)]
    assert panel.records[(0, 0)].iou_change < 0 < panel.records[(0, 1)].iou_change
    assert panel.records[(0, 0)].uncertain_share == 1.0


def test_bad_ground_truth_is_reported_not_raised(qtbot, tmp_path, scene):
    session = make_session(tmp_path, scene)
    session.images[0].ground_truth = [Instance.from_mask(np.ones((10, 10), bool), 1)]  # not the image's size
    window, panel = open_window(qtbot, session)
    assert panel.records == {} and len(panel.problems) == 1 and "scene.png" in panel.problems[0]
    assert panel.stack.currentWidget() is panel.empty_label and "scene.png" in panel.empty_label.text()


def test_a_new_session_is_measured_when_the_window_shows_it(qtbot, tmp_path, scene):
    window, panel = open_window(qtbot, None)
    assert panel.stack.currentWidget() is panel.empty_label
    window.session = make_session(tmp_path, scene)
    window.imageChanged.emit(0)
    qtbot.waitUntil(lambda: panel.pending == 0 and len(panel.records) == 2, timeout=5000)
    assert panel.stack.currentIndex() == 1


def test_an_instance_selected_while_the_panel_is_hidden_shows_when_it_is_shown(qtbot, tmp_path, scene):
    window, panel = open_window(qtbot, make_session(tmp_path, scene))
    dock = window.findChild(QtWidgets.QDockWidget)
    dock.hide()  # as behind another tab, or before the window is first shown
    window.instanceSelected.emit(0, 1)
    assert panel.selected is None
    dock.show()
    qtbot.waitUntil(panel.isVisible, timeout=2000)
    assert panel.selected == (0, 1) and len(panel.gallery.rows) == len(scene.boxes[1])
