"""The BPR Studio main window: canvas, image and instance lists, review keys, touch-up tools, background refinement.

The window holds no algorithm: masks change only through Session methods, patches and
refinement come from core.refiner (patch_boxes; a Refiner in a RefineWorker thread, run by
gui.refine_controller), files from io; its keys are in gui.shortcuts.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Callable

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import Qt

from ..core.config import RefinerConfig
from ..core.rle import rle_crop
from ..io.errors import DatasetError
from ..session import Session, open_session
from ..session.export import default_export_path
from ..session.model import crop_box, grow_box, union_box
from ..session.view import ViewState
from . import icons, overlay
from .shortcuts import SHORTCUTS, MOUSE, key, keys, start_hint
from .canvas import Canvas
from .dialogs import ExportDialog, OpenDialog
from .panels import ImageList, InstanceTable, ViewControls
from .patch_preview import PatchPreview, mask_window, window_patch_boxes
from .refine_controller import RefineController
from .worker import RefineJob


def default_refiner_factory(weights=None, device: str = "auto") -> Callable[[RefinerConfig], object]:
    """A factory ``config -> Refiner`` loading ``weights`` (None: the shipped default) on ``device``."""
    def make(config: RefinerConfig):
        from ..core.refiner import Refiner
        return Refiner(config, weights=weights, device=device)
    make.weights, make.device = weights, device  # read by gui.adapt (the default weights, where to refine)
    return make


def device_name(device: str = "auto") -> str:
    """'CUDA', 'MPS' or 'CPU': where ``device`` ("auto", "cpu", "cuda:1", ...) refines."""
    from ..core.refiner import pick_device
    return {"cuda": "CUDA", "mps": "MPS"}.get(pick_device(device).type, "CPU")


def checked_device(device: str) -> tuple[str, str | None]:
    """(``device``, None) when this machine has it, else ("cpu", why not): the window then refines on the CPU."""
    from ..core.refiner import pick_device
    try:
        pick_device(device)
    except (ValueError, RuntimeError) as exc:
        return "cpu", f"{exc}; refining on the CPU"
    return device, None


def _hit(crop, x: int, y: int) -> bool:
    """Whether pixel (x, y) is inside an instance crop (x0, y0, (h, w) bool)."""
    if crop is None:
        return False
    x0, y0, mask = crop
    return 0 <= y - y0 < mask.shape[0] and 0 <= x - x0 < mask.shape[1] and bool(mask[y - y0, x - x0])


START_HINT = start_hint()


class MainWindow(QtWidgets.QMainWindow):
    """The review window over a Session.

    refiner_factory: ``config -> object with refine(image, masks, on_instance, should_stop, on_batch)
    and device_name``, called once in the worker thread (default: the shipped model on ``device``).
    device: where refinement runs ("auto", "cpu", "cuda", ...; see checked_device).
    Extension hooks: ``session``, ``add_panel``, ``open_instance``, ``center_canvas_on``, the
    signals ``instanceRefined(image, instance)`` and ``imageChanged(image)``.
    """

    instanceRefined = QtCore.pyqtSignal(int, int)
    imageChanged = QtCore.pyqtSignal(int)
    refineFinished = QtCore.pyqtSignal(bool)  # cancelled
    instanceSelected = QtCore.pyqtSignal(int, int)  # image index, instance index

    LAYOUT_VERSION = 1
    """Version of the saved dock layout: raise it when docks are added or renamed, so an old layout
    is not restored over them."""

    def __init__(self, session: Session | None = None, refiner_factory=None,
                 config: RefinerConfig | None = None, parent=None, device: str = "auto",
                 layout_settings: QtCore.QSettings | None = None):
        super().__init__(parent)
        self.session: Session | None = None
        self.image_index = -1
        self.view = ViewState()  # selection, masks shown, diff, colours, hidden instances
        self.view.changed.connect(self._view_changed)
        self.auto_advance = True
        self.config = config or RefinerConfig()
        self.last_error: str | None = None
        self.last_export = None  # the ExportReport of the last export
        self.device = device
        self._patches_shown = "selected"  # what the patch key brings back
        self._pixels: np.ndarray | None = None
        self._labels: np.ndarray | None = None
        self._boxes: dict[int, tuple | None] = {}
        self._diff_labels: np.ndarray | None = None  # the diff view's label map, when it is shown
        self._selected_frame: tuple | None = None  # the image box the selected instance's layer covers
        self._patch_boxes: dict[int, np.ndarray] = {}  # the patch preview, per instance shown
        self._patch_preview = PatchPreview(self)
        self._patch_preview.ready.connect(self._patches_ready)
        self._patches_touched: set[int] = set()  # instances touched up since their patches were found
        self._patch_timer = QtCore.QTimer(self, singleShot=True, interval=150)  # strokes in a row: once
        self._patch_timer.timeout.connect(self._find_touched_patches)
        self._extension_docks: list[QtWidgets.QDockWidget] = []
        self._load_problems: list = []
        self._docks_sized = False
        self.setWindowTitle("BPR Studio")
        self.resize(1400, 900)
        self._build_widgets()
        self.refinement = RefineController(self, refiner_factory or default_refiner_factory(device=device))
        self.refinement.show_progress(False)
        self._build_actions()
        from .adapt import install_adapt
        self.adapt = install_adapt(self)
        self._overlay_timer = QtCore.QTimer(self, singleShot=True, interval=120)
        self._overlay_timer.timeout.connect(self._rebuild_overlay)
        if session is not None:
            self.set_session(session)
        from .inspect_panel import install_inspect_panel
        install_inspect_panel(self)
        self._add_panel_menu()
        self._default_layout = self.saveState(self.LAYOUT_VERSION)
        self.layout_settings = layout_settings
        self._restore_geometry()

    # ---- layout ----------------------------------------------------------------------------------

    def _build_widgets(self) -> None:
        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self.image_list = ImageList()
        self.instance_table = InstanceTable()
        self.view_controls = ViewControls(self.config)
        self.setTabPosition(Qt.RightDockWidgetArea, QtWidgets.QTabWidget.North)
        self.image_dock = self._dock(self.image_list, "Images", Qt.LeftDockWidgetArea)
        self.instance_dock = self._dock(self.instance_table, "Instances", Qt.RightDockWidgetArea)
        self.view_dock = self._dock(self._scrolled(self.view_controls), "View and patches", Qt.LeftDockWidgetArea)
        self.image_list.setFocusPolicy(Qt.NoFocus)
        self.image_list.currentRowChanged.connect(self._image_row_changed)
        self.instance_table.instanceSelected.connect(self.select_instance)
        self.instance_table.visibilityChanged.connect(self.set_instance_visible)
        self.view_controls.mode.currentTextChanged.connect(self.view.set_mask_mode)
        self.view_controls.diff.toggled.connect(self.view.set_diff)
        self.view_controls.color_by.currentTextChanged.connect(self.view.set_color_by)
        self.view_controls.ground_truth.toggled.connect(self._draw_ground_truth)
        self.view_controls.opacity.valueChanged.connect(lambda v: self.canvas.set_overlay_opacity(v / 100.0))
        self.view_controls.patchesChanged.connect(self.refresh_patches)
        self.canvas.set_overlay_opacity(self.view_controls.opacity.value() / 100.0)
        self.canvas.clicked.connect(self._canvas_clicked)
        self.canvas.strokeFinished.connect(self._stroke_finished)
        self.canvas.polygonChanged.connect(lambda n: n and self.statusBar().showMessage(
            f"polygon: {n} points - {key('polygon_add')} adds, {key('polygon_subtract')} subtracts, "
            f"{key('polygon_back')} removes a point, {key('escape')} cancels"))

        status = self.statusBar()
        self.hint_label = QtWidgets.QLabel(START_HINT)  # shown whenever no other message is
        self.hint_label.setContentsMargins(8, 0, 8, 0)
        status.addWidget(self.hint_label, 1)
        self.review_label = QtWidgets.QLabel()
        self.progress_label = QtWidgets.QLabel()
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setFormat("%v/%m patches")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setFocusPolicy(Qt.NoFocus)
        self.cancel_button.clicked.connect(self.cancel_refinement)
        self.device_label = QtWidgets.QLabel(f"device: {device_name(self.device)}")
        self.device_label.setToolTip("where refinement runs (CUDA, MPS or CPU)")
        for widget in (self.review_label, self.progress_label, self.progress_bar, self.cancel_button,
                       self.device_label):
            widget.setContentsMargins(8, 0, 8, 0)
            status.addPermanentWidget(widget)

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self.statusBar().currentMessage():  # put up before the window showed (a restored session's):
            self.hint_label.hide()  # hidden as QStatusBar hides it, so that it comes back when the message goes
            self.hint_label.setAttribute(Qt.WA_WState_ExplicitShowHide, False)
        if not self._docks_sized:  # once laid out: the saved docks, or the canvas and instance list get the room
            self._docks_sized = True
            if not self._restore_docks():
                self._default_dock_sizes()

    def _default_dock_sizes(self) -> None:
        """Narrow side panels, the instance list up to 440 px and at most 27% of the window's width:
        on a 1280-px laptop screen the canvas keeps about half the width."""
        instance_width = max(300, min(440, round(0.27 * self.width())))
        self.resizeDocks([self.image_dock, self.instance_dock], [230, instance_width], Qt.Horizontal)
        self.resizeDocks([self.image_dock, self.view_dock], [200, 400], Qt.Vertical)

    def _add_panel_menu(self) -> None:
        """View > Panels: a check item per dock (a closed panel comes back from here)."""
        panels = self.menus["&View"].addMenu("&Panels")
        for dock in self.findChildren(QtWidgets.QDockWidget):
            panels.addAction(dock.toggleViewAction())

    def _restore_geometry(self) -> None:
        """The window's size and place as they were when it was last closed (``layout_settings`` None:
        nothing remembered); its docks follow when it is first shown (``_restore_docks``)."""
        geometry = self.layout_settings.value("window/geometry") if self.layout_settings is not None else None
        if isinstance(geometry, QtCore.QByteArray):
            self.restoreGeometry(geometry)

    def _restore_docks(self) -> bool:
        """The docks as they were when the window was last closed; False when nothing was saved or
        it was saved for other docks (another LAYOUT_VERSION). Called once shown: Qt sizes restored
        docks right only then."""
        state = self.layout_settings.value("window/state") if self.layout_settings is not None else None
        return isinstance(state, QtCore.QByteArray) and self.restoreState(state, self.LAYOUT_VERSION)

    def _save_layout(self) -> None:
        if self.layout_settings is not None:
            self.layout_settings.setValue("window/geometry", self.saveGeometry())
            self.layout_settings.setValue("window/state", self.saveState(self.LAYOUT_VERSION))
            self.layout_settings.sync()

    def reset_layout(self) -> None:
        """View > Reset window layout: the docks where a first start puts them, all shown."""
        self.restoreState(self._default_layout, self.LAYOUT_VERSION)
        for dock in self.findChildren(QtWidgets.QDockWidget):
            dock.show()
        self.instance_dock.raise_()
        self._default_dock_sizes()

    def _dock(self, widget, title, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    @staticmethod
    def _scrolled(widget: QtWidgets.QWidget) -> QtWidgets.QScrollArea:
        """``widget`` in a frameless scroll area as wide as the widget needs: a tall panel scrolls
        instead of raising the window's minimum height (on a 768-px laptop screen)."""
        area = QtWidgets.QScrollArea()
        area.setWidget(widget)
        area.setWidgetResizable(True)
        area.setFrameShape(QtWidgets.QFrame.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        area.setMinimumWidth(widget.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
        return area

    def add_panel(self, widget: QtWidgets.QWidget, title: str) -> QtWidgets.QDockWidget:
        """Add an extension panel as a dock on the right, a tab beside the Instances list (which stays
        in front): each tab gets the whole height of the window."""
        dock = self._dock(widget, title, Qt.RightDockWidgetArea)
        self.tabifyDockWidget(self._extension_docks[-1] if self._extension_docks else self.instance_dock, dock)
        self._extension_docks.append(dock)
        self.instance_dock.raise_()
        return dock

    def _build_actions(self) -> None:
        self.actions: dict[str, QtWidgets.QAction] = {}
        self.menus = menus = {name: self.menuBar().addMenu(name)
                              for name in ("&File", "&Review", "&Edit", "&View", "&Refine")}
        toolbar = self.toolbar = self.addToolBar("Tools")
        toolbar.setObjectName("Tools")
        toolbar.setFocusPolicy(Qt.NoFocus)
        toolbar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        toolbar.setIconSize(QtCore.QSize(20, 20))

        def add(name, slot, menu=None, tool=None, checkable=False):
            """The action ``name`` of the shortcuts table, its keys in its tooltip; tool: its short text
            on the toolbar (None: not there)."""
            shortcut = SHORTCUTS[name]
            action = QtWidgets.QAction(shortcut.text, self)
            action.setShortcuts([QtGui.QKeySequence(k) for k in shortcut.keys])
            action.setCheckable(checkable)
            action.triggered.connect(lambda *_: slot())
            plain = shortcut.description
            action.setToolTip(f"{plain} ({' or '.join(shortcut.keys)})" if shortcut.keys else plain)
            self.addAction(action)
            if menu:
                menus[menu].addAction(action)
            if tool is not None:
                action.setIconText(tool)
                action.setIcon(icons.icon(name.replace("tool_", "")))
                toolbar.addAction(action)
            self.actions[name] = action
            return action

        add("open", self.open_dialog, "&File", tool="Open")
        add("export", self.export_dialog, "&File", tool="Export")
        add("save", self.save_session, "&File")
        add("quit", self.close, "&File")
        toolbar.addSeparator()
        add("accept", self.accept_selected, "&Review", tool="Accept")
        add("reject", self.reject_selected, "&Review", tool="Reject")
        add("accept_all", self.accept_all_refined, "&Review")
        add("next_unreviewed", lambda: self.goto_unreviewed(1), "&Review")
        add("prev_unreviewed", lambda: self.goto_unreviewed(-1), "&Review")
        add("next_image", lambda: self.step_image(1), "&Review")
        add("prev_image", lambda: self.step_image(-1), "&Review")
        add("undo", self.undo, "&Edit")
        add("redo", self.redo, "&Edit")
        self.tool_group = QtWidgets.QActionGroup(self)
        for name in ("select", "brush", "eraser", "polygon"):
            action = add(f"tool_{name}", functools.partial(self.set_tool, name), "&Edit",
                         tool=SHORTCUTS[f"tool_{name}"].description, checkable=True)
            self.tool_group.addAction(action)
        self.actions["tool_select"].setChecked(True)
        self.brush_spin = QtWidgets.QSpinBox()
        self.brush_spin.setRange(1, 500)
        self.brush_spin.setValue(int(self.canvas.brush_radius))
        self.brush_spin.setPrefix("r ")
        self.brush_spin.setSuffix(" px")
        self.brush_spin.setToolTip(f"brush and eraser radius in image pixels ({key('brush_smaller')} smaller, "
                                   f"{key('brush_bigger')} bigger)")
        self.brush_spin.setFocusPolicy(Qt.ClickFocus)
        self.brush_spin.valueChanged.connect(lambda v: self.canvas.set_brush_radius(v))
        toolbar.addWidget(self.brush_spin)
        # after a click in a box, give the keys back to the canvas (single-letter shortcuts)
        for spin in (self.brush_spin, *self.view_controls.setting_spins):
            spin.editingFinished.connect(self.canvas.setFocus)
        for combo in (self.view_controls.mode, self.view_controls.color_by, self.view_controls.patches):
            combo.activated.connect(lambda *_: self.canvas.setFocus())
        self.view_controls.opacity.sliderReleased.connect(self.canvas.setFocus)
        add("brush_smaller", lambda: self.brush_spin.setValue(max(1, int(self.brush_spin.value() / 1.25))), "&Edit")
        add("brush_bigger", lambda: self.brush_spin.setValue(int(self.brush_spin.value() * 1.25) + 1), "&Edit")
        add("polygon_add", lambda: self.apply_polygon(False), "&Edit")
        add("polygon_subtract", lambda: self.apply_polygon(True), "&Edit")
        add("polygon_back", self.canvas.undo_polygon_point, "&Edit")
        add("escape", self.escape, "&Edit")
        toolbar.addSeparator()
        add("cycle_masks", self.cycle_masks, "&View")
        add("diff", self.view_controls.diff.toggle, "&View")
        add("color_by",
            lambda: self.view_controls.color_by.setCurrentIndex(1 - self.view_controls.color_by.currentIndex()),
            "&View")
        add("ground_truth", self.view_controls.ground_truth.toggle, "&View")
        add("hide", self.toggle_selected_visible, "&View")
        add("patches", self.toggle_patches, "&View")
        add("fit", self.canvas.fit, "&View")
        add("actual_size", self.canvas.actual_size, "&View")
        add("zoom_in", lambda: self.canvas.zoom(1.25), "&View")
        add("zoom_out", lambda: self.canvas.zoom(0.8), "&View")
        add("reset_layout", self.reset_layout, "&View")
        add("refine_image", self.refine_current_image, "&Refine", tool="Refine image")
        add("refine_selected", self.refine_selected, "&Refine", tool="Refine selected")
        add("refine_all", self.refine_dataset, "&Refine", tool="Refine all")
        add("cancel", self.cancel_refinement, "&Refine")
        help_menu = self.menuBar().addMenu("&Help")
        help_keys = QtWidgets.QAction(SHORTCUTS["help_keys"].text, self)
        help_keys.setShortcuts([QtGui.QKeySequence(k) for k in keys("help_keys")])
        help_keys.triggered.connect(self.show_keys)
        about = QtWidgets.QAction("&About BPR Studio", self)
        about.triggered.connect(self.show_about)
        for action in (help_keys, about):
            self.addAction(action)
            help_menu.addAction(action)

    # ---- session and images ------------------------------------------------------------------------

    def open_dataset(self, path, format=None, annotations=None, predictions=None, session_path=None,
                     save: bool = True) -> bool:
        """Open a dataset and its session (save False: in memory only, no session file). Problems are
        shown; the current session stays open on failure."""
        problems: list = []
        try:
            session = open_session(path, format=format, annotations=annotations, predictions=predictions,
                                   session_path=session_path, errors=problems, save=save)
        except (DatasetError, OSError, ValueError) as exc:
            self.show_error("Cannot open dataset", str(exc))
            return False
        self.set_session(session, problems)
        self.setWindowTitle(f"BPR Studio - {Path(path).name}" + (f" + {Path(predictions).name}" if predictions else ""))
        return True

    def set_session(self, session: Session, problems: list | None = None) -> None:
        """Show ``session`` (the previous one is saved and closed). problems: (path, message) of files left out."""
        self.cancel_refinement()
        self._wait_for_worker()
        if self.session is not None:
            self.session.close()
        self.session = session
        self._load_problems = list({message: (path, message) for path, message in problems or []}.values())
        session.events.changed.connect(self._session_changed)
        self.image_list.set_images(session)
        for path, message in self._load_problems:
            self.image_list.add_problem(path, message)
        self.setWindowTitle(f"BPR Studio - {session.store.path.name if session.store else 'unsaved session'}")
        self.image_index = -1
        if session.images:
            self.show_image(min(session.current, len(session.images) - 1))
        else:
            self.canvas.set_image(None, "No readable images in this dataset.")
        self._update_review_label()
        self.canvas.setFocus()
        if self._load_problems:
            lines = "\n".join(message for _, message in self._load_problems[:20])
            more = f"\n... and {len(self._load_problems) - 20} more" if len(self._load_problems) > 20 else ""
            self.show_error("Some files could not be read",
                            f"{len(self._load_problems)} file(s) were left out; everything else is open.\n\n{lines}{more}")
        if session.restore_message:
            self.show_error("Session", session.restore_message)
        elif session.restored:
            counts = session.review_counts()
            n = sum(counts.values())
            self.statusBar().showMessage(f"restored session: {n - counts['unreviewed']} of {n} reviewed, "
                                         f"back at image {self.image_index + 1} of {len(session.images)}", 15000)
        self.adapt.session_opened(session)

    def show_image(self, i: int) -> None:
        """Make image i current: read it, draw its instances, list them."""
        session = self.session
        if session is None or not 0 <= i < len(session.images):
            return
        session.select_image(i)
        self.image_index = i
        self.view.new_image()
        image = session.images[i]
        try:
            self._pixels = image.read_image()
            self.canvas.set_image(self._pixels)
        except DatasetError as exc:
            self._pixels = None
            self.canvas.set_image(None, f"Unreadable image:\n{exc}\n\n{key('next_image')} / {key('prev_image')}: "
                                        "next / previous image")
        self.image_list.update_image(image)
        self.image_list.blockSignals(True)
        self.image_list.setCurrentRow(i)
        self.image_list.blockSignals(False)
        self.instance_table.set_image(image, session.categories)
        self.view_controls.ground_truth.setEnabled(image.ground_truth is not None)
        self._rebuild_overlay()
        self._draw_ground_truth()
        self._update_history_actions()
        self._update_review_label()
        self.imageChanged.emit(i)
        if image.instances and self._pixels is not None:  # something to look at: its patches drawn
            statuses = [inst.status for inst in image.instances]
            self.select_instance(statuses.index("unreviewed") if "unreviewed" in statuses else 0)
        else:
            self.refresh_patches()

    def _image_row_changed(self, row: int) -> None:
        if self.session is not None and 0 <= row < len(self.session.images) and row != self.image_index:
            self.show_image(row)

    def step_image(self, step: int) -> None:
        if self.session and self.session.images:
            self.show_image((self.image_index + step) % len(self.session.images))

    def open_instance(self, image_index: int, instance_index: int) -> None:
        """Show image ``image_index``, select the instance and centre the view on it."""
        if image_index != self.image_index:
            self.show_image(image_index)
        self.select_instance(instance_index)
        inst = self.session.images[image_index].instances[instance_index]
        x, y, w, h = inst.source.bbox
        if self._pixels is not None:
            self.center_canvas_on(x + w / 2, y + h / 2)

    def center_canvas_on(self, x: float, y: float) -> None:
        """Scroll the canvas so image pixel (x, y) is in the middle."""
        self.canvas.center_on(x, y)

    def image_pixels(self, image_index: int) -> np.ndarray | None:
        """The (H, W, 3) uint8 RGB pixels of image ``image_index`` when the window shows it (read
        only), else None: a panel need not decode the image again."""
        return self._pixels if image_index == self.image_index else None

    @property
    def selected(self) -> int | None:
        """The selected instance of the current image (``view.selected``)."""
        return self.view.selected

    @property
    def _hidden(self) -> set[int]:
        return self.view.hidden

    def _view_changed(self, event) -> None:
        """The view model changed: the panel's widgets show it, the overlay follows (selection and
        visibility are drawn by select_instance and set_instance_visible, which set them)."""
        if event.kind in ("mask_mode", "diff", "color_by"):
            controls = self.view_controls
            for widget, setter, value in ((controls.mode, controls.mode.setCurrentText, self.view.mask_mode),
                                          (controls.diff, controls.diff.setChecked, self.view.diff),
                                          (controls.color_by, controls.color_by.setCurrentText, self.view.color_by)):
                widget.blockSignals(True)
                setter(value)
                widget.blockSignals(False)
            self._rebuild_overlay()

    def current_image(self):
        return None if self.session is None or self.image_index < 0 else self.session.images[self.image_index]

    # ---- selection and drawing ---------------------------------------------------------------------

    def select_instance(self, j: int | None) -> None:
        image = self.current_image()
        if image is None or (j is not None and not 0 <= j < len(image.instances)):
            return
        previous = self.selected
        self.view.select(j)
        self.instance_table.select(j)
        if previous != j:
            # the selected instance has its own layer: hide it in the cached one, show the previous one again
            self._repaint_instances([k for k in (previous, j) if k is not None])
            self._redraw_selected()
            if j is not None:
                self.instanceSelected.emit(self.image_index, j)
        self.refresh_patches()

    def set_instance_visible(self, j: int, visible: bool) -> None:
        self.view.set_visible(j, visible)
        row = self.instance_table.row_of(j)
        if row is not None:
            item = self.instance_table.table.item(row, 0)
            state = Qt.Checked if visible else Qt.Unchecked
            if item.checkState() != state:
                self.instance_table.table.blockSignals(True)
                item.setCheckState(state)
                self.instance_table.table.blockSignals(False)
        if self.view.diff:
            self._rebuild_overlay()
        else:
            self._repaint_instances([j])
            self._redraw_selected()

    def toggle_selected_visible(self) -> None:
        if self.selected is not None:
            self.set_instance_visible(self.selected, self.selected in self._hidden)

    def toggle_patches(self) -> None:
        """Patch overlay off, or back to what it showed before (the selected instance's at first)."""
        combo = self.view_controls.patches
        if combo.currentText() == "off":
            combo.setCurrentText(self._patches_shown)
        else:
            self._patches_shown = combo.currentText()
            combo.setCurrentText("off")

    def cycle_masks(self) -> None:
        combo = self.view_controls.mode
        combo.setCurrentIndex((combo.currentIndex() + 1) % combo.count())
        self.statusBar().showMessage(f"showing {combo.currentText()} masks", 2000)

    def shown_name(self, inst) -> str:
        """Which mask of an InstanceState the view mode (final / refined / coarse) shows."""
        return self.view.shown_name(inst)

    def _color(self, j: int) -> tuple[int, int, int]:
        if self.view.color_by == "class":
            return overlay.palette_color(self.current_image().instances[j].category_id)
        return overlay.palette_color(j)

    def _rebuild_overlay(self) -> None:
        """Redraw the cached layer of every instance (after a view change, or a change in diff view)."""
        self._overlay_timer.stop()
        image = self.current_image()
        self._boxes = {}
        self._diff_labels = None
        if image is None or self._pixels is None:
            self._labels = None
            self.canvas.set_overlay(None)
            self._set_selected_layer(None)
            return
        if self.view.diff:
            self._labels = None
            self._diff_labels = overlay.diff_map(image.shape, self._diff_pairs())
            self.canvas.set_overlay(overlay.indexed_image(self._diff_labels, overlay.diff_colors()))
            self._set_selected_layer(None)
            return
        self._labels = overlay.label_map(image.shape, self._shown_crops())
        self._recolor()
        self._redraw_selected()

    def _diff_pairs(self):
        """(coarse crop, refined-or-edited crop) of every shown instance with a refined or edited mask."""
        return [(inst.crop("coarse"), inst.crop("edited" if inst.has("edited") else "refined"))
                for j, inst in enumerate(self.current_image().instances)
                if j not in self._hidden and (inst.has("refined") or inst.has("edited"))]

    def _shown_crops(self):
        """(j, crop) of every instance's shown mask, remembering each crop's box for later partial redraws."""
        for j, inst in enumerate(self.current_image().instances):
            crop = inst.crop(self.shown_name(inst))
            self._boxes[j] = crop_box(crop)
            yield j, crop

    def _color_table(self) -> list[int]:
        image = self.current_image()
        colors = {j: self._color(j) for j in range(len(image.instances))}
        hidden = self._hidden | ({self.selected} if self.selected is not None else set())
        return overlay.instance_colors(colors, hidden)

    def _repaint_region(self, box, relabel: bool = False) -> None:
        """Redraw box (x0, y0, x1, y1) of the cached layer; ``relabel`` first redraws its labels from the masks."""
        if box is None or self._labels is None:
            return
        x0, y0, x1, y1 = box
        if relabel:
            overlay.paint_labels(self._labels, self._shown_crops(), box)
        self.canvas.update_overlay(overlay.indexed_image(self._labels[y0:y1, x0:x1], self._color_table()), x0, y0)

    def _repaint_instances(self, js) -> None:
        """Recolour the boxes of instances js (selection or visibility changed)."""
        if self._labels is None:
            return
        for j in js:
            self._repaint_region(self._boxes.get(j))

    def _instance_mask_changed(self, j: int, window=None) -> None:
        """Instance j's shown mask changed (only inside ``window``, image pixels, when given: a stroke):
        redraw that part of the cached layer, and of its own layer when it is the selected one."""
        image = self.current_image()
        if self.view.diff:
            if window is None or self._diff_labels is None:
                self._overlay_timer.start()
                return
            overlay.paint_diff(self._diff_labels, self._diff_pairs(), window)
            x0, y0, x1, y1 = window
            self.canvas.update_overlay(overlay.indexed_image(self._diff_labels[y0:y1, x0:x1], overlay.diff_colors()),
                                       x0, y0)
            return
        if self._labels is None:
            return
        inst = image.instances[j]
        if window is None:
            box = union_box(self._boxes.get(j), crop_box(inst.crop(self.shown_name(inst))))
        else:  # outlines (1 px) of every instance there may change one pixel around the window
            box = grow_box(window, 1, image.shape)
        self._repaint_region(box, relabel=True)
        if j == self.selected:
            self._redraw_selected(window)

    def _draw_ground_truth(self, *_) -> None:
        """Ground-truth outlines in white, when ground truth was loaded and the View panel asks for them."""
        image = self.current_image()
        if image is None or self._pixels is None or not image.ground_truth \
                or not self.view_controls.ground_truth.isChecked():
            self.canvas.set_truth_overlay(None)
            return
        labels = overlay.label_map(image.shape, ((k, rle_crop(gt.rle)) for k, gt in enumerate(image.ground_truth)
                                                 if gt.size == image.shape))
        self.canvas.set_truth_overlay(overlay.indexed_image(labels, overlay.outline_colors()))

    def _recolor(self) -> None:
        """New colour table for the cached layer: colours, hidden instances, the selected one left to its own layer."""
        if self._labels is not None and self.current_image() is not None:
            self.canvas.set_overlay(overlay.indexed_image(self._labels, self._color_table()))

    def _redraw_selected(self, window=None) -> None:
        """Draw the selected instance's own layer; after a change only inside ``window`` (a stroke),
        only that part of it, while the mask's box stays inside the layer's frame (the mask's box
        with room to grow)."""
        j = self.selected
        image = self.current_image()
        if j is None or image is None or j in self._hidden or self._pixels is None \
                or self.view.diff:
            self._set_selected_layer(None)
            return
        inst = image.instances[j]
        crop = inst.crop(self.shown_name(inst))
        frame = self._selected_frame
        if window is not None and frame is not None and overlay.contains(frame, crop_box(crop)):
            x0, y0, x1, y1 = grow_box(window, 2, image.shape)  # the 2 px edge band
            part = max(x0, frame[0]), max(y0, frame[1]), min(x1, frame[2]), min(y1, frame[3])
            if part[0] < part[2] and part[1] < part[3]:
                drawn, _ = overlay.selected_image(crop, self._color(j), part)
                self.canvas.update_selected_overlay(drawn, part[0], part[1])
            return
        box = crop_box(crop)
        if box is None:
            self._set_selected_layer(None)
            return
        room = max(32, max(box[2] - box[0], box[3] - box[1]) // 16)  # strokes outwards fit for a while
        frame = grow_box(box, room, image.shape)
        self._set_selected_layer(overlay.selected_image(crop, self._color(j), frame), frame)

    def _set_selected_layer(self, image_and_offset, frame=None) -> None:
        self._selected_frame = frame if image_and_offset is not None else None
        self.canvas.set_selected_overlay(image_and_offset)

    def refresh_patches(self) -> None:
        """Draw the boundary patches the refiner would use (of the selected instance, or all) with the current settings."""
        self._patch_preview.cancel()
        self._patch_timer.stop()
        self._patches_touched.clear()
        image = self.current_image()
        self.config = dataclasses.replace(self.config, **self.view_controls.settings())
        self._patch_boxes = {j: window_patch_boxes([self._refine_window(image, j)], image.shape, self.config)
                             for j in self._patch_instances()}
        self._show_patches()

    def _patch_instances(self) -> list[int]:
        """The instances whose patches the preview shows."""
        mode = self.view_controls.patches.currentText()
        image = self.current_image()
        if mode == "off" or image is None or self._pixels is None:
            return []
        if mode == "selected":
            return [] if self.selected is None else [self.selected]
        return [j for j in range(len(image.instances)) if j not in self._hidden]

    def _show_patches(self) -> None:
        if self.view_controls.patches.currentText() == "off" or self.current_image() is None or self._pixels is None:
            self.canvas.set_patches(np.zeros((0, 4)))
            self.view_controls.patch_count.setText("")
            return
        boxes = [self._patch_boxes[j] for j in self._patch_instances() if j in self._patch_boxes]
        boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.int32)
        self.canvas.set_patches(boxes)
        self.view_controls.patch_count.setText(f"{len(boxes)} patches")

    def _refresh_patches_later(self, j: int) -> None:
        """Instance j was touched up: find its patches again shortly (once for strokes in quick
        succession) in the background; the old ones stay drawn until then."""
        if j in self._patch_instances():
            self._patches_touched.add(j)
            self._patch_timer.start()

    def _find_touched_patches(self) -> None:
        """Ask the background preview for the patches of the instances touched up (on copies of their
        masks' windows)."""
        image = self.current_image()
        touched, self._patches_touched = self._patches_touched, set()
        for j in sorted(touched & set(self._patch_instances())):
            self._patch_preview.request((self.image_index, j), [self._refine_window(image, j)], image.shape,
                                        self.config)

    def _patches_ready(self, key, boxes) -> None:
        if key[0] == self.image_index and key[1] in self._patch_instances():
            self._patch_boxes[key[1]] = boxes
            self._show_patches()

    @staticmethod
    def refine_input_name(inst) -> str:
        """Which mask BPR refines for an instance: "edited" when it has a touch-up (and is not rejected), else "coarse"."""
        return "edited" if inst.has("edited") and inst.status != "rejected" else "coarse"

    @classmethod
    def refine_input(cls, inst) -> np.ndarray:
        """The (H, W) bool mask BPR refines for an instance (see refine_input_name)."""
        return getattr(inst, cls.refine_input_name(inst))

    def _refine_window(self, image, j: int):
        """A copy of the window of instance j's refine input that patch_boxes needs (patch_preview.mask_window):
        its patches without decoding the whole mask."""
        inst = image.instances[j]
        return mask_window(inst.crop(self.refine_input_name(inst)), image.shape)

    def _session_changed(self, event) -> None:
        session = self.session
        if event.image is None or session is None:
            return
        self.image_list.update_image(session.images[event.image])
        self._update_review_label()
        if event.image != self.image_index:
            return
        if event.kind == "history":
            self._update_history_actions()
            return
        if event.kind == "patches":  # the masks did not change
            return
        if event.instance is not None:
            self.instance_table.update_instance(event.instance)
            self._instance_mask_changed(event.instance, event.window)  # a status change can change the final mask too
            if event.window is not None:
                self._refresh_patches_later(event.instance)
            elif event.instance == self.selected:
                self.refresh_patches()

    def _canvas_clicked(self, x: float, y: float) -> None:
        image = self.current_image()
        if image is None or self._pixels is None:
            return
        h, w = image.shape
        xi, yi = int(x), int(y)
        if not (0 <= xi < w and 0 <= yi < h):
            return
        hits = [j for j, inst in enumerate(image.instances) if j not in self._hidden and _hit(inst.crop(self.shown_name(inst)), xi, yi)]
        if hits:
            # clicking again where instances overlap cycles through them, topmost first
            order = hits[::-1]
            j = order[(order.index(self.selected) + 1) % len(order)] if self.selected in order else order[0]
            self.select_instance(j)
        else:
            self.select_instance(None)

    # ---- review ------------------------------------------------------------------------------------

    def _need_selection(self) -> bool:
        if self.selected is None or self.current_image() is None:
            self.statusBar().showMessage(f"Select an instance first: click it, pick it in the list, or press {key('next_unreviewed')}", 4000)
            return False
        return True

    def accept_selected(self) -> None:
        if self._need_selection():
            self.session.accept(self.image_index, self.selected)
            self._advance()

    def reject_selected(self) -> None:
        if self._need_selection():
            self.session.reject(self.image_index, self.selected)
            self._advance()

    def _advance(self) -> None:
        """After a review key: select the next unreviewed instance of this image, if any."""
        if not self.auto_advance:
            return
        found = self.session.next_unreviewed(self.image_index, self.selected)
        if found is not None and found[0] == self.image_index:
            self.select_instance(found[1])

    def accept_all_refined(self) -> None:
        if self.current_image() is not None:
            n = self.session.accept_all_refined(self.image_index)
            self.statusBar().showMessage(f"accepted {n} refined instance(s)", 3000)

    def goto_unreviewed(self, step: int) -> None:
        if self.session is None or not self.session.images:
            return
        found = self.session.next_unreviewed(max(self.image_index, 0), self.selected, step)
        if found is None:
            self.statusBar().showMessage("every instance is reviewed", 4000)
            return
        self.open_instance(*found)

    def undo(self) -> None:
        if self.current_image() is not None and not self.session.undo(self.image_index):
            self.statusBar().showMessage("nothing to undo on this image", 2000)

    def redo(self) -> None:
        if self.current_image() is not None and not self.session.redo(self.image_index):
            self.statusBar().showMessage("nothing to redo on this image", 2000)

    def _update_history_actions(self) -> None:
        ok = self.current_image() is not None
        self.actions["undo"].setEnabled(ok and self.session.can_undo(self.image_index))
        self.actions["redo"].setEnabled(ok and self.session.can_redo(self.image_index))

    def _update_review_label(self) -> None:
        if self.session is None:
            self.review_label.setText("")
            return
        total = self.session.review_counts()
        n = sum(total.values())
        text = f"dataset: {n - total['unreviewed']}/{n} reviewed"
        image = self.current_image()
        if image is not None:
            counts = image.review_counts()
            text = f"image {self.image_index + 1}/{len(self.session.images)}: " \
                   f"{len(image.instances) - counts['unreviewed']}/{len(image.instances)} reviewed | " + text
        self.review_label.setText(text)

    # ---- touch-up ----------------------------------------------------------------------------------

    def set_tool(self, tool: str) -> None:
        self.canvas.set_tool(tool)
        self.actions[f"tool_{tool}"].setChecked(True)
        self.canvas.setFocus()

    def _stroke_finished(self, points: np.ndarray, erase: bool) -> None:
        if self._need_selection() and self._pixels is not None:
            self.session.paint(self.image_index, self.selected, points, self.canvas.brush_radius, erase=erase)

    def apply_polygon(self, subtract: bool) -> None:
        if self.canvas.tool != "polygon" or len(self.canvas.polygon_points) < 3:
            self.statusBar().showMessage(f"polygon tool ({key('tool_polygon')}): click at least 3 points, then {key('polygon_add')}", 3000)
            return
        if self._need_selection():
            self.session.fill_polygon(self.image_index, self.selected, self.canvas.take_polygon(), subtract=subtract)

    def escape(self) -> None:
        if self.canvas.polygon_points:
            self.canvas.cancel_polygon()
        elif self.canvas.tool != "select":
            self.set_tool("select")

    # ---- refinement (what to refine; the RefineController runs it) ---------------------------------

    @property
    def refining(self) -> bool:
        return self.refinement.refining

    def refine_current_image(self) -> None:
        image = self.current_image()
        if image is not None:
            self._start_refinement([self._job(image, range(len(image.instances)))], "image")

    def refine_selected(self) -> None:
        """Refine the instances selected in the list (or the selected one); touched-up ones are re-refined from their edit."""
        image = self.current_image()
        if image is None:
            return
        chosen = self.instance_table.selected_instances() or ([self.selected] if self.selected is not None else [])
        if not chosen:
            self._need_selection()
            return
        edits = [j for j in chosen if image.instances[j].has("edited") and image.instances[j].status != "rejected"]
        plain = [j for j in chosen if j not in edits]
        jobs = [job for job in (self._job(image, plain), self._job(image, edits, as_edit=True)) if job.instances]
        self._start_refinement(jobs, "selected instances")

    def refine_dataset(self) -> None:
        if self.session is not None:
            jobs = [self._job(image, range(len(image.instances))) for image in self.session.images]
            self._start_refinement([job for job in jobs if job.instances], "dataset")

    def _job(self, image, instances, as_edit: bool = False) -> RefineJob:
        return self.refinement.job(image, instances, self.refine_input if as_edit else None)

    def _start_refinement(self, jobs: list[RefineJob], what: str) -> None:
        if not self.refining and jobs:
            self.refresh_patches()  # takes the patch settings of the View panel
        self.refinement.start(jobs, what, self.config)

    def cancel_refinement(self) -> None:
        """Ask a running refinement to stop after its current batch; the status bar says so at once."""
        self.refinement.cancel()

    def _wait_for_worker(self, ms: int | None = 10000) -> None:
        """Wait (with the window still painting) until the running refinement has finished, at most
        ``ms`` milliseconds (None: no limit)."""
        self.refinement.wait(ms)

    # ---- files -------------------------------------------------------------------------------------

    def open_dialog(self) -> None:
        dialog = OpenDialog(self)
        if dialog.exec_() == QtWidgets.QDialog.Accepted and dialog.values()["path"]:
            self.open_dataset(**dialog.values())

    def export_dialog(self) -> None:
        if self.session is None:
            return
        source = self.session.source
        dialog = ExportDialog(self, str(default_export_path(source)), source.format if source else "coco")
        if dialog.exec_() == QtWidgets.QDialog.Accepted and dialog.values()["out"]:
            self.export_dataset(**dialog.values())

    def export_dataset(self, out, format: str, unreviewed: str = "coarse") -> bool:
        """Export through the io layer, after asking before any existing file is replaced; what was
        kept unchanged or left out is said. A failure is shown and nothing else changes."""
        try:
            replaced = self.session.files_replaced(out, format)
            if replaced and not self.confirm_replace(replaced):
                self.statusBar().showMessage("export cancelled: nothing was written", 6000)
                return False
            report = self.session.export(out, format, unreviewed)
        except (DatasetError, OSError, ValueError) as exc:
            self.show_error("Export failed", str(exc))
            return False
        message = f"exported {report.images} images, {report.instances} instances as {format} to {out}"
        self.statusBar().showMessage(message, 8000)
        notes = [f"Kept unchanged from the original file: {line}." for line in report.kept] + \
                [f"Left out: {line}." for line in report.left_out]
        if notes:
            box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Information, "Export",
                                        message + ".\n\n" + "\n".join(notes), QtWidgets.QMessageBox.Ok, self)
            box.setAttribute(Qt.WA_DeleteOnClose)
            box.open()
        self.last_export = report
        return True

    def confirm_replace(self, paths: list[Path]) -> bool:
        """Ask whether existing files may be replaced (No is the default)."""
        listed = "\n".join(str(p) for p in paths[:10])
        if len(paths) > 10:
            listed += f"\n... and {len(paths) - 10} more"
        answer = QtWidgets.QMessageBox.question(
            self, "Replace existing files?",
            f"The export would replace {len(paths)} existing file(s):\n\n{listed}\n\nReplace them?",
            QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, QtWidgets.QMessageBox.No)
        return answer == QtWidgets.QMessageBox.Yes

    def save_session(self) -> None:
        if self.session is not None and self.session.store is not None:
            self.session.save()
            self.statusBar().showMessage(f"session saved to {self.session.store.path}", 4000)

    def show_error(self, title: str, message: str) -> QtWidgets.QMessageBox:
        """A non-blocking warning box (tests find it among the window's QMessageBox children)."""
        self.last_error = message
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Warning, title, message, QtWidgets.QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()
        return box

    def key_table(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every action with a shortcut, then the mouse."""
        rows = [(" / ".join(QtGui.QKeySequence(k).toString(QtGui.QKeySequence.NativeText) for k in shortcut.keys),
                 shortcut.description)
                for name, shortcut in SHORTCUTS.items() if shortcut.keys and name in self.actions]
        return rows + list(MOUSE)

    def show_keys(self) -> QtWidgets.QDialog:
        """The keyboard table (F1), a non-modal dialog."""
        dialog = QtWidgets.QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        table = QtWidgets.QTableWidget(0, 2, dialog)
        table.setHorizontalHeaderLabels(("Keys", "Action"))
        table.verticalHeader().hide()
        table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        for row, (sequence, text) in enumerate(self.key_table()):
            table.insertRow(row)
            table.setItem(row, 0, QtWidgets.QTableWidgetItem(sequence))
            table.setItem(row, 1, QtWidgets.QTableWidgetItem(text))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        layout = QtWidgets.QVBoxLayout(dialog)
        layout.addWidget(table)
        dialog.resize(520, 640)
        dialog.show()
        return dialog

    def show_about(self) -> None:
        from .. import __version__

        QtWidgets.QMessageBox.about(
            self, "About BPR Studio",
            f"<b>BPR Studio {__version__}</b><p>Review and polish instance-segmentation masks with Boundary Patch "
            "Refinement (Tang et al., &ldquo;Look Closer to Segment Better: Boundary Patch Refinement for "
            f"Instance Segmentation&rdquo;, CVPR 2021).</p><p>MIT licence. Press {key('help_keys')} for the keyboard "
            "shortcuts.</p>")

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self._patch_preview.shutdown()
        if self.refining:  # cancelled, it stops after the current batch (or the model's first export)
            self.statusBar().showMessage("finishing the current batch before closing...")
        self.cancel_refinement()
        self._wait_for_worker(None)
        self.adapt.cancel()
        self.adapt.wait(60000)
        if self.session is not None:
            self.session.close()
        self._save_layout()
        super().closeEvent(event)
