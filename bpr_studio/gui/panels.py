"""Side panels of the window: the image list, the instance table and the view and patch controls."""

from __future__ import annotations

from pathlib import Path

from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import Qt

from ..session import STATUSES
from ..session.view import PATCH_MODES
from .shortcuts import label


def narrow_combo(combo: QtWidgets.QComboBox) -> None:
    """Let ``combo`` ask for 8 characters of width rather than its longest item's: a narrow side
    panel leaves the canvas the room (items stay whole in the open list)."""
    combo.setSizeAdjustPolicy(QtWidgets.QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(8)


STATUS_COLORS = {"unreviewed": QtGui.QColor(150, 150, 150), "accepted": QtGui.QColor(60, 170, 80),
                 "rejected": QtGui.QColor(210, 70, 60), "edited": QtGui.QColor(70, 130, 220)}


def distinct_names(paths: list[str | Path]) -> list[str]:
    """For each path, its file name, or as many of its last folders with it as tell it apart from the
    other paths (``a/scene_1.jpg`` and ``b/scene_1.jpg`` for two images named ``scene_1.jpg``)."""
    parts = [Path(p).parts for p in paths]
    depth = [1] * len(parts)
    while True:
        names = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        grow = [i for i, name in enumerate(names) if seen[name] > 1 and depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


class ImageList(QtWidgets.QListWidget):
    """One row per image: file name (with its folders where two images share it), review progress,
    or why it cannot be read; the tooltip gives the whole path."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._names: list[str] = []  # per image of the session, what its row calls it

    def set_images(self, session) -> None:
        self.blockSignals(True)
        self.clear()
        self._names = distinct_names([image.path for image in session.images])
        for name in self._names:
            self.addItem(QtWidgets.QListWidgetItem(name))
        self.blockSignals(False)
        for image in session.images:
            self.update_image(image)

    def update_image(self, image) -> None:
        item = self.item(image.index)
        if item is None:
            return
        name = self._names[image.index]
        if image.error:
            item.setText(f"{name}  (unreadable)")
            item.setForeground(QtGui.QBrush(STATUS_COLORS["rejected"]))
            item.setToolTip(image.error)  # names the file
            return
        counts = image.review_counts()
        n = len(image.instances)
        reviewed = n - counts["unreviewed"]
        item.setText(f"{name}  {reviewed}/{n}")
        item.setToolTip(f"{image.path}\n" + ", ".join(f"{k}: {v}" for k, v in counts.items()))
        done = n > 0 and reviewed == n
        item.setForeground(QtGui.QBrush(STATUS_COLORS["accepted"] if done else self.palette().text().color()))

    def add_problem(self, path, message: str) -> None:
        """A row for a file that could not be loaded (not selectable; the message is its tooltip)."""
        item = QtWidgets.QListWidgetItem(f"{Path(path).name}  (unreadable)")
        item.setFlags(Qt.NoItemFlags)
        item.setForeground(QtGui.QBrush(STATUS_COLORS["rejected"]))
        item.setToolTip(message)
        self.addItem(item)


class InstanceTable(QtWidgets.QWidget):
    """Sortable table of the current image's instances with a status filter and a visibility check box.

    Signals: instanceSelected(j) when exactly one row is selected, visibilityChanged(j, visible).
    Several selected rows (Shift / Ctrl click) are what "Refine selected" refines.
    """

    instanceSelected = QtCore.pyqtSignal(int)
    visibilityChanged = QtCore.pyqtSignal(int, bool)
    COLUMNS = ("#", "class", "score", "status", "changed")

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Show"))
        self.filter = QtWidgets.QComboBox()
        self.filter.addItems(("all",) + STATUSES)
        self.filter.setFocusPolicy(Qt.NoFocus)
        row.addWidget(self.filter, 1)
        self.progress_label = QtWidgets.QLabel()
        row.addWidget(self.progress_label)
        layout.addLayout(row)
        self.table = QtWidgets.QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.horizontalHeaderItem(4).setToolTip("pixels where the final mask differs from the coarse one")
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.ExtendedSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.setFocusPolicy(Qt.NoFocus)
        layout.addWidget(self.table)
        self.filter.currentTextChanged.connect(self._apply_filter)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemChanged.connect(self._item_changed)
        self._image = None
        self._categories = {}

    def set_image(self, image, categories: dict[int, str]) -> None:
        """Fill the table with an ImageState's instances (None: empty)."""
        self._image, self._categories = image, categories
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        if image is not None:
            self.table.setRowCount(len(image.instances))
            for j in range(len(image.instances)):
                for c in range(len(self.COLUMNS)):
                    self.table.setItem(j, c, QtWidgets.QTableWidgetItem())
                first = self.table.item(j, 0)
                first.setData(Qt.UserRole, j)
                first.setFlags(first.flags() | Qt.ItemIsUserCheckable)
                first.setCheckState(Qt.Checked)
                self._fill_row(j, j)
        self.table.setSortingEnabled(True)
        self.table.blockSignals(False)
        self._apply_filter()
        self._update_progress()

    def update_instance(self, j: int) -> None:
        row = self.row_of(j)
        if row is None:
            return
        self.table.blockSignals(True)
        self._fill_row(row, j)  # the row may move if the table is sorted by a column that changed
        self.table.blockSignals(False)
        self._apply_filter()
        self._update_progress()

    def row_of(self, j: int) -> int | None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.UserRole) == j:
                return row
        return None

    def select(self, j: int | None) -> None:
        """Highlight instance j without emitting instanceSelected."""
        self.table.blockSignals(True)
        self.table.clearSelection()
        row = None if j is None else self.row_of(j)
        if row is not None:
            self.table.selectRow(row)
            self.table.scrollToItem(self.table.item(row, 0))
        self.table.blockSignals(False)

    def selected_instances(self) -> list[int]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.table.item(r, 0).data(Qt.UserRole) for r in rows]

    def _fill_row(self, row: int, j: int) -> None:
        inst = self._image.instances[j]
        name = self._categories.get(inst.category_id, str(inst.category_id))
        values = (j, name, inst.score if inst.score is not None else "", inst.status, inst.changed_pixels)
        items = [self.table.item(row, c) for c in range(len(values))]  # before a sorted table moves the row
        for item, value in zip(items, values):
            value = round(value, 3) if isinstance(value, float) else value
            if item.data(Qt.DisplayRole) != value:
                item.setData(Qt.DisplayRole, value)
        items[3].setForeground(QtGui.QBrush(STATUS_COLORS[inst.status]))

    def _apply_filter(self, *_) -> None:
        wanted = self.filter.currentText()
        for row in range(self.table.rowCount()):
            status = self.table.item(row, 3).text()
            self.table.setRowHidden(row, wanted != "all" and status != wanted)

    def _update_progress(self) -> None:
        if self._image is None:
            self.progress_label.setText("")
            return
        counts = self._image.review_counts()
        n = len(self._image.instances)
        self.progress_label.setText(f"{n - counts['unreviewed']}/{n} reviewed")

    def _selection_changed(self) -> None:
        chosen = self.selected_instances()
        if len(chosen) == 1:
            self.instanceSelected.emit(chosen[0])

    def _item_changed(self, item: QtWidgets.QTableWidgetItem) -> None:
        if item.column() == 0:
            self.visibilityChanged.emit(item.data(Qt.UserRole), item.checkState() == Qt.Checked)


def _pixel_spin(maximum: int, value: int, zero_text: str, tip: str) -> QtWidgets.QSpinBox:
    """A spin box of 0 to ``maximum`` pixels at ``value``, showing ``zero_text`` at 0 (the setting's off)."""
    spin = QtWidgets.QSpinBox()
    spin.setRange(0, maximum)
    spin.setSpecialValueText(zero_text)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class ViewControls(QtWidgets.QWidget):
    """Mask shown, diff view, overlay opacity, colouring, and the patch preview settings."""

    changed = QtCore.pyqtSignal()
    patchesChanged = QtCore.pyqtSignal()
    MODES = ("final", "refined", "coarse")
    # the RefinerConfig fields these controls set
    SETTINGS = ("patch_size", "nms_thr", "min_size", "attached_only", "margin", "mirror", "max_shift", "snap")

    def __init__(self, config, parent=None):
        """config: the RefinerConfig whose SETTINGS the controls start at (the window's)."""
        super().__init__(parent)
        form = QtWidgets.QFormLayout(self)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(self.MODES)
        self.diff = QtWidgets.QCheckBox("show")
        self.diff.setToolTip("green: pixels refinement added to the coarse mask; red: pixels it removed")
        self.ground_truth = QtWidgets.QCheckBox("outlines")
        self.ground_truth.setChecked(True)
        self.ground_truth.setToolTip("white outlines of the ground truth (when the dataset has annotations besides the predictions)")
        self.opacity = QtWidgets.QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(70)
        self.color_by = QtWidgets.QComboBox()
        self.color_by.addItems(("instance", "class"))
        self.patches = QtWidgets.QComboBox()
        self.patches.addItems(PATCH_MODES)
        self.patches.setCurrentText("selected")
        self.patches.setToolTip("the boundary patches BPR will refine, of the selected instance or of all shown "
                                "instances, with the size and NMS threshold below")
        self.patch_size = QtWidgets.QSpinBox()
        self.patch_size.setRange(8, 512)
        self.patch_size.setValue(config.patch_size)
        self.nms_thr = QtWidgets.QDoubleSpinBox()
        self.nms_thr.setRange(0.05, 1.0)
        self.nms_thr.setSingleStep(0.05)
        self.nms_thr.setValue(config.nms_thr)
        self.min_size = QtWidgets.QSpinBox()
        self.min_size.setRange(0, 4096)
        self.min_size.setValue(config.min_size)
        self.min_size.setToolTip("instances whose box is shorter than this on its longer side keep their coarse mask "
                                 "(the shipped model makes most small instances worse); 0 refines all")
        self.attached_only = QtWidgets.QCheckBox("boundary only")
        self.attached_only.setChecked(config.attached_only)
        self.attached_only.setToolTip("on: refinement keeps only the changes connected to the coarse mask's boundary "
                                      "(islands and holes it opens away from it are undone); off: the network's "
                                      "mask as it is. Applies to the next refinement")
        self.margin = QtWidgets.QDoubleSpinBox()
        self.margin.setRange(0.0, 0.45)
        self.margin.setSingleStep(0.05)
        self.margin.setValue(config.margin)
        self.margin.setToolTip("a pixel leaves its coarse value only where the network's foreground probability "
                               "passes 0.5 by more than this: higher keeps the coarse mask where the network is "
                               "unsure (fewer masks made worse, smaller corrections). Applies to the next refinement")
        self.mirror = QtWidgets.QCheckBox("also mirrored")
        self.mirror.setChecked(config.mirror)
        self.mirror.setToolTip("on (the default): the network also sees every patch mirrored left-right and the two "
                               "are averaged: slightly better boundaries for twice the network's work; off: about "
                               "two thirds of the refinement's time. Applies to the next refinement")
        self.max_shift = _pixel_spin(64, config.max_shift, "no limit",
                                     "boundaries move by at most this many pixels; pixels farther from the coarse "
                                     "boundary keep their coarse value. For masks you know are close (old "
                                     "annotations): 3 stops the network from jumping to a stronger edge nearby, "
                                     "but also keeps it from fixing masks that are off by more. Applies to the next "
                                     "refinement")
        self.snap = _pixel_spin(8, config.snap, "off",
                                "moves refined boundaries onto the photograph's edges (a guided filter of this "
                                "radius in pixels; 2 by default): masks right to the pixel where the object's edge "
                                "is sharp. Off keeps the network's own boundary, closer to how polygons are drawn. "
                                "Applies to the next refinement")
        # the spin boxes among the SETTINGS controls
        self.setting_spins = (self.patch_size, self.nms_thr, self.min_size, self.margin, self.max_shift, self.snap)
        self.patch_count = QtWidgets.QLabel("")
        form.addRow(label("Masks", "cycle_masks"), self.mode)
        form.addRow(label("Diff", "diff"), self.diff)
        form.addRow(label("Ground truth", "ground_truth"), self.ground_truth)
        form.addRow("Opacity", self.opacity)
        form.addRow(label("Colour by", "color_by"), self.color_by)
        form.addRow(label("Patches", "patches"), self.patches)
        form.addRow("Patch size (px)", self.patch_size)
        form.addRow("NMS threshold", self.nms_thr)
        form.addRow("Min size (px)", self.min_size)
        form.addRow("Changes", self.attached_only)
        form.addRow("Margin", self.margin)
        form.addRow("Mirror", self.mirror)
        form.addRow("Max shift (px)", self.max_shift)
        form.addRow("Edge snap (px)", self.snap)
        form.addRow("", self.patch_count)
        for widget in (self.mode, self.color_by, self.patches, self.opacity, *self.setting_spins):
            widget.setFocusPolicy(Qt.ClickFocus)
        for combo in (self.mode, self.color_by, self.patches):
            narrow_combo(combo)
        for box in (self.diff, self.ground_truth, self.attached_only, self.mirror):
            box.setFocusPolicy(Qt.NoFocus)
        self.mode.currentTextChanged.connect(self.changed)
        self.diff.toggled.connect(self.changed)
        self.color_by.currentTextChanged.connect(self.changed)
        self.patches.currentTextChanged.connect(self.patchesChanged)
        for spin in self.setting_spins:
            spin.valueChanged.connect(self.patchesChanged)
        self.attached_only.toggled.connect(self.patchesChanged)  # the settings are read together
        self.mirror.toggled.connect(self.patchesChanged)

    def settings(self) -> dict:
        """The SETTINGS as the controls show them, for ``dataclasses.replace`` of a RefinerConfig."""
        return {"patch_size": self.patch_size.value(), "nms_thr": round(self.nms_thr.value(), 4),
                "min_size": self.min_size.value(), "attached_only": self.attached_only.isChecked(),
                "margin": round(self.margin.value(), 4), "mirror": self.mirror.isChecked(),
                "max_shift": self.max_shift.value(), "snap": self.snap.value()}
