"""The Inspect dock: IoU scatter, ranked instances and the patch gallery of the selected instance.

The records come from ``session.inspect.InspectModel`` (Qt-free; it follows the session's refinements)
and drawings from ``core.figures``; this module only shows them and turns clicks into window actions: a dot or a ranked entry -> ``window.open_instance(i, j)``, a
gallery tile -> ``window.center_canvas_on(x, y)`` at the centre of its patch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PyQt5 import QtCore, QtGui, QtWidgets, sip

from ..core.figures import PatchRow, draw_scatter, patch_rows
from ..core.quality import FILTERS, SORTS, InstanceQuality, measure_patches, worst_patches_first
from ..core.rle import decode_rle
from ..io.images import read_image
from ..session.inspect import InspectModel
from .panels import narrow_combo

EMPTY_TEXT = (
    "Nothing to inspect yet.\n\n"
    "Load ground truth to compare each instance's IoU before and after refinement, "
    "or refine instances to rank them by the refiner's own uncertainty."
)
GALLERY_HINT = "Select an instance (click a dot or a ranked entry) to see its patches."
TILE_SIZE = 96
"""Largest side of a gallery tile on screen, in pixels (smaller when the dock is narrow, at least MIN_TILE_SIZE)."""
MIN_TILE_SIZE = 56
PICK_RADIUS = 8
"""A click within this many pixels of a dot selects it."""


class ScatterCanvas(FigureCanvasQTAgg):
    """IoU before (x) against after (y), one dot per instance; hovering a dot describes it, a
    click emits its instance."""

    instancePicked = QtCore.pyqtSignal(int, int)

    def __init__(self, parent=None):
        self.figure = Figure(figsize=(3.2, 3.2), dpi=80, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setMinimumSize(200, 200)
        self.ax = self.figure.add_subplot()
        self.points: list[InstanceQuality] = []
        self.mpl_connect("button_press_event", self._on_press)
        self.mpl_connect("motion_notify_event", self._on_move)

    def draw(self) -> None:
        """matplotlib's redraw, skipped when the widget is gone: a redraw matplotlib queued can run while
        Python's garbage collector deletes the window that held the canvas (seen in the tests, whose
        windows become garbage with a redraw pending)."""
        if sip.isdeleted(self):
            return
        try:
            super().draw()
        except RuntimeError:
            if not sip.isdeleted(self):
                raise

    def set_records(self, records, selected: tuple[int, int] | None = None) -> None:
        """Redraw with ``records`` (InstanceQuality); ``selected`` (image, instance) is ringed."""
        self.ax.clear()
        self.points = draw_scatter(self.ax, records, selected)
        if not self.points:
            self.ax.text(0.5, 0.5, "no instance has IoU before and after yet\n(needs ground truth and refinement)",
                         ha="center", va="center", fontsize=8, transform=self.ax.transAxes,
                         bbox={"facecolor": "white", "edgecolor": "none"})  # over the diagonal
        self.draw_idle()

    def display_point(self, index: int) -> tuple[float, float]:
        """Display coordinates (pixels from the bottom-left) of dot ``index``."""
        q = self.points[index]
        x, y = self.ax.transData.transform((q.iou_before, q.iou_after))
        return float(x), float(y)

    def _nearest(self, event) -> InstanceQuality | None:
        """The dot within PICK_RADIUS of a mouse event, or None."""
        if event.inaxes is not self.ax or not self.points:
            return None
        xy = self.ax.transData.transform([(q.iou_before, q.iou_after) for q in self.points])
        dist = np.hypot(xy[:, 0] - event.x, xy[:, 1] - event.y)
        best = int(np.argmin(dist))
        return self.points[best] if dist[best] <= PICK_RADIUS * self.device_pixel_ratio else None

    def _on_press(self, event) -> None:
        q = self._nearest(event)
        if q is not None:
            self.instancePicked.emit(q.image_index, q.instance_index)

    def _on_move(self, event) -> None:
        q = self._nearest(event)
        if q is None:
            QtWidgets.QToolTip.hideText()
        else:
            QtWidgets.QToolTip.showText(QtGui.QCursor.pos(), _describe(q) + "\nclick to open", self)


class TileLabel(QtWidgets.QLabel):
    """One gallery tile; a left click emits ``clicked``."""

    clicked = QtCore.pyqtSignal()

    def __init__(self, tile: np.ndarray, tooltip: str, parent=None, size: int = TILE_SIZE):
        super().__init__(parent)
        h, w = tile.shape[:2]
        data = np.ascontiguousarray(tile)
        image = QtGui.QImage(data.data, w, h, 3 * w, QtGui.QImage.Format_RGB888).copy()
        self.setPixmap(QtGui.QPixmap.fromImage(image).scaled(size, size, QtCore.Qt.KeepAspectRatio))
        self.setToolTip(tooltip)
        self.setCursor(QtCore.Qt.PointingHandCursor)

    def mousePressEvent(self, event) -> None:
        if event.button() == QtCore.Qt.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


class PatchGallery(QtWidgets.QScrollArea):
    """One row of tiles per boundary patch (image, coarse, probability, refined, ground truth);
    clicking a tile emits ``patchClicked(x, y)``, the patch centre in image pixels."""

    patchClicked = QtCore.pyqtSignal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.rows: list[PatchRow] = []
        self.tiles: list[list[TileLabel]] = []
        self.show_message(GALLERY_HINT)

    def show_message(self, text: str) -> None:
        """Replace the gallery by a line of text."""
        self.rows, self.tiles = [], []
        label = QtWidgets.QLabel(text)
        label.setWordWrap(True)
        label.setAlignment(QtCore.Qt.AlignTop | QtCore.Qt.AlignLeft)
        self.setWidget(label)

    def set_rows(self, rows: list[PatchRow], title: str = "") -> None:
        """Show ``rows`` (core.figures.PatchRow), first row at the top."""
        if not rows:
            self.show_message(f"{title}\nNo boundary patches.")
            return
        content = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(content)
        heading = QtWidgets.QLabel(title)
        heading.setWordWrap(True)
        outer.addWidget(heading)
        grid = QtWidgets.QGridLayout()
        grid.setSpacing(3)
        outer.addLayout(grid)
        outer.addStretch(1)
        n_cols = len(rows[0].tiles)
        # tiles as large as fit side by side in the dock's width
        size = max(MIN_TILE_SIZE, min(TILE_SIZE, (self.viewport().width() - 24 - 3 * n_cols) // n_cols))
        for c, name in enumerate(rows[0].tiles):
            header = QtWidgets.QLabel()
            header.setWordWrap(True)  # "ground truth" over two lines rather than a column wider than its tiles
            header.setAlignment(QtCore.Qt.AlignHCenter | QtCore.Qt.AlignBottom)
            header.setMaximumWidth(size)
            font = header.font()
            font.setPointSizeF(font.pointSizeF() * 0.85)
            header.setFont(font)
            metrics = QtGui.QFontMetrics(font)  # a word wider than its tiles ends in "..." (the full name as tip)
            header.setText(" ".join(metrics.elidedText(word, QtCore.Qt.ElideRight, size) for word in name.split()))
            header.setToolTip(name)
            grid.addWidget(header, 0, c, QtCore.Qt.AlignHCenter)
        grid.setColumnStretch(n_cols, 1)  # an empty last column takes the spare width
        self.rows, self.tiles = list(rows), []
        for r, row in enumerate(rows):
            x0, y0, x1, y1 = row.patch.box
            centre = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
            grid.addWidget(QtWidgets.QLabel(row.caption), 1 + 2 * r, 0, 1, n_cols + 1)
            labels = []
            for c, (name, tile) in enumerate(row.tiles.items()):
                label = TileLabel(tile, f"{row.caption}\n{name}: click to centre the view on this patch", size=size)
                label.clicked.connect(lambda cx=centre[0], cy=centre[1]: self.patchClicked.emit(cx, cy))
                grid.addWidget(label, 2 + 2 * r, c)
                labels.append(label)
            self.tiles.append(labels)
        self.setWidget(content)


class InspectPanel(QtWidgets.QWidget):
    """Failure inspection of ``window.session``: an empty state until ground truth is loaded or an
    instance is refined, then the scatter, the ranked instances and the selected instance's patches.

    ``model`` (session.inspect.InspectModel) holds the records and the images still to measure;
    ``records`` and ``problems`` are its.
    """

    SPLIT = (3, 2, 4)
    """Shares of the height for the scatter, the ranking and the gallery."""

    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.main_window = window
        self.model = InspectModel(on_update=self._instance_measured)
        self.selected: tuple[int, int] | None = None
        self._hidden_selection: tuple[int, int] | None = None  # selected in the window while this was hidden
        self._updated: set[tuple[int, int]] = set()
        self._work_timer = QtCore.QTimer(self, interval=0)
        self._work_timer.timeout.connect(self._measure_next)
        self._redraw_timer = QtCore.QTimer(self, singleShot=True, interval=250)
        self._redraw_timer.timeout.connect(self.redraw)

        self.stack = QtWidgets.QStackedWidget()
        self.empty_label = QtWidgets.QLabel(EMPTY_TEXT)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(QtCore.Qt.AlignCenter)
        self.stack.addWidget(self.empty_label)

        content = QtWidgets.QWidget()
        self.sort_box = QtWidgets.QComboBox()
        for name, (label, _) in SORTS.items():
            self.sort_box.addItem(label, name)
        self.filter_box = QtWidgets.QComboBox()
        for name, (label, _) in FILTERS.items():
            self.filter_box.addItem(label, name)
        self.summary = QtWidgets.QLabel()
        self.summary.setWordWrap(True)
        self.scatter = ScatterCanvas()
        self.ranked = QtWidgets.QListWidget()
        self.gallery = PatchGallery()
        for box in (self.sort_box, self.filter_box):
            narrow_combo(box)
        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(self.sort_box)
        controls.addWidget(self.filter_box)
        splitter = self.splitter = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        splitter.addWidget(self.scatter)
        splitter.addWidget(self.ranked)
        splitter.addWidget(self.gallery)
        for index, stretch in enumerate(self.SPLIT):
            splitter.setStretchFactor(index, stretch)
        self._split = False  # whether the splitter got its first sizes
        layout = QtWidgets.QVBoxLayout(content)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(controls)
        layout.addWidget(self.summary)
        layout.addWidget(splitter, 1)
        self.stack.addWidget(content)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

        self.sort_box.currentIndexChanged.connect(self._fill_ranked)
        self.filter_box.currentIndexChanged.connect(self._fill_ranked)
        self.ranked.itemClicked.connect(lambda item: self.select_instance(*item.data(QtCore.Qt.UserRole)))
        self.scatter.instancePicked.connect(self.select_instance)
        self.gallery.patchClicked.connect(self.main_window.center_canvas_on)
        self.main_window.imageChanged.connect(self._image_changed)
        self.main_window.instanceSelected.connect(self.follow_selection)
        self.refresh()

    def showEvent(self, event) -> None:
        """Shown (its tab raised): show the instance the window selected while this was hidden."""
        super().showEvent(event)
        if self._hidden_selection is not None:
            selection, self._hidden_selection = self._hidden_selection, None
            self.follow_selection(*selection)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        height = self.splitter.height()
        if not self._split and height > 150:  # the size hints would give the scatter nearly all of it
            self._split = True
            self.splitter.setSizes([height * share // sum(self.SPLIT) for share in self.SPLIT])

    # ---- data ----------------------------------------------------------------------------------

    @property
    def records(self) -> dict[tuple[int, int], InstanceQuality]:
        return self.model.records

    @property
    def problems(self) -> list[str]:
        return self.model.problems

    @property
    def pending(self) -> int:
        """Images still to be measured after the last ``refresh``."""
        return len(self.model.queue)

    def _session(self):
        return getattr(self.main_window, "session", None)

    def refresh(self) -> None:
        """Measure every instance of the session again (after opening a dataset or loading ground
        truth): one image per event-loop turn, so the window stays responsive on large datasets."""
        self.selected = self._hidden_selection = None
        self.gallery.show_message(GALLERY_HINT)
        self.model.attach(self._session())
        self.redraw()
        if self.model.queue:
            self._work_timer.start()

    def _image_changed(self, image_index: int) -> None:
        """A new session shows its first image: measure it (the window has no session-changed signal)."""
        if self._session() is not self.model.session:
            self.refresh()

    def _measure_next(self) -> None:
        """Measure the next queued image; redraw when none is left."""
        if self.model.measure_next():
            images = len(self.model.session.images)
            self.summary.setText(f"measuring: {images - len(self.model.queue)} of {images} images")
        else:
            self._work_timer.stop()
            self.redraw()

    def _instance_measured(self, image_index: int, instance_index: int) -> None:
        """The model measured a refined instance again: redraw shortly (a refinement run refines many)."""
        self._updated.add((image_index, instance_index))
        self._redraw_timer.start()

    # ---- views ---------------------------------------------------------------------------------

    def redraw(self) -> None:
        """Show the empty state, or redraw the scatter and the ranking (and the gallery, when the
        selected instance was measured again since the last redraw)."""
        if not self.model.has_content():
            self.empty_label.setText(EMPTY_TEXT + "".join(f"\n\n{p}" for p in self.problems[:3]))
            self.stack.setCurrentIndex(0)
            return
        self.stack.setCurrentIndex(1)
        self.scatter.set_records(list(self.records.values()), self.selected)
        self.summary.setText(self.model.summary())
        self._fill_ranked()
        if self.selected in self._updated:
            self._show_gallery(*self.selected)
        self._updated.clear()

    def ranking(self) -> list[InstanceQuality]:
        """The records in the order and filter chosen in the panel."""
        return self.model.ranking(self.sort_box.currentData(), self.filter_box.currentData())

    def instance_order(self, image_index: int, sort: str = "worst_change", keep: str = "all") -> list[int]:
        """Instance indices of one image for the window's instance list (InspectModel.instance_order)."""
        return self.model.instance_order(image_index, sort, keep)

    def set_ordering(self, sort: str, keep: str) -> None:
        """Choose the sort and filter by name (core.quality.SORTS, FILTERS)."""
        self.sort_box.setCurrentIndex(self.sort_box.findData(sort))
        self.filter_box.setCurrentIndex(self.filter_box.findData(keep))

    def _fill_ranked(self) -> None:
        self.ranked.clear()
        for q in self.ranking():
            item = QtWidgets.QListWidgetItem(_describe(q))
            item.setToolTip(item.text())  # the whole line, when the dock is narrower than it
            item.setData(QtCore.Qt.UserRole, (q.image_index, q.instance_index))
            self.ranked.addItem(item)

    def select_instance(self, image_index: int, instance_index: int) -> None:
        """Open the instance in the window, ring its dot and show its patch gallery."""
        self.selected = (image_index, instance_index)
        self.main_window.open_instance(image_index, instance_index)
        self.scatter.set_records(list(self.records.values()), self.selected)
        self._show_gallery(image_index, instance_index)

    def follow_selection(self, image_index: int, instance_index: int) -> None:
        """The window selected an instance (canvas, table or keys): ring its dot and show its gallery."""
        if not self.isVisible():  # drawn when shown (showEvent)
            self._hidden_selection = (image_index, instance_index)
            return
        if self.selected == (image_index, instance_index):
            return
        self.selected = (image_index, instance_index)
        if self.stack.currentIndex() == 1:  # the scatter is shown (a matplotlib redraw takes a while)
            self.scatter.set_records(list(self.records.values()), self.selected)
        self._show_gallery(image_index, instance_index)

    def _show_gallery(self, image_index: int, instance_index: int) -> None:
        image = self._session().images[image_index]
        inst = image.instances[instance_index]
        q = self.records.get((image_index, instance_index))
        title = f"{Path(image.record.path).name} #{instance_index}" + (f" ({q.area} px) {_figures(q)}" if q else "")
        if inst.refined is None or inst.boxes is None:
            self.gallery.show_message(f"{title}\nNot refined yet: refine it to see its patches.")
            return
        gt_mask = None
        if q is not None and q.gt_index is not None:
            gt_mask = decode_rle(self.model.ground_truth(image_index)[0][q.gt_index])
        try:
            pixels = self.main_window.image_pixels(image_index)
            if pixels is None:
                pixels = read_image(image.record.path, inst.coarse.shape[::-1])  # the size its masks have
            patches = worst_patches_first(measure_patches(inst.coarse, inst.refined, inst.boxes, inst.probs, gt_mask))
            rows = patch_rows(pixels, inst.coarse, inst.refined, patches, inst.probs, gt_mask)
        except ValueError as exc:  # DatasetError, or an image of another size than its masks
            self.gallery.show_message(f"{title}\n{exc}")
            return
        self.gallery.set_rows(rows, title)


def _describe(q: InstanceQuality) -> str:
    """One line about an instance for the ranked list."""
    return f"{q.image_name or f'image {q.image_index}'} #{q.instance_index} ({q.area} px) {_figures(q)}"


def _figures(q: InstanceQuality) -> str:
    """The instance's figures as short text."""
    parts = []
    if q.iou_change is not None:
        parts.append(f"IoU {q.iou_before:.3f} \u2192 {q.iou_after:.3f} ({q.iou_change:+.3f})")
    elif q.iou_before is not None:
        parts.append(f"IoU {q.iou_before:.3f}")
    if q.uncertain_share is not None:
        parts.append(f"{100 * q.uncertain_share:.0f}% uncertain")
    if q.changed_share is not None:
        parts.append(f"{100 * q.changed_share:.0f}% changed")
    return ", ".join(parts)


def install_inspect_panel(window) -> InspectPanel:
    """Add the Inspect dock to a MainWindow (called at the end of ``MainWindow.__init__``)."""
    panel = InspectPanel(window)
    window.add_panel(panel, "Inspect")
    return panel
