"""The canvas: the image with instance overlays, patch boxes and the touch-up tools' previews (QGraphicsView).

It draws what the window gives it and reports what the user did (clicks, finished strokes and
polygons); it never changes a mask itself. Zoom with the wheel (at the cursor) or the keys (at the
view centre), pan with the middle button or space + drag; fit() and actual_size().
"""

from __future__ import annotations

import numpy as np
from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtCore import Qt


TOOLS = ("select", "brush", "eraser", "polygon")


class OverlayItem(QtWidgets.QGraphicsItem):
    """A pixmap layer whose rectangles can be repainted in place (a stroke on an 8000 px image
    repaints the stroke's box, not the whole layer), placed at an image pixel offset."""

    def __init__(self):
        super().__init__()
        self.setFlag(QtWidgets.QGraphicsItem.ItemUsesExtendedStyleOption)
        self._pixmap: QtGui.QPixmap | None = None

    def set_image(self, image: QtGui.QImage | None, offset: tuple[int, int] = (0, 0)) -> None:
        self.prepareGeometryChange()
        self._pixmap = None if image is None else QtGui.QPixmap.fromImage(image)
        self.setPos(*offset)
        self.update()

    def update_region(self, image: QtGui.QImage, x: int, y: int) -> None:
        """Replace the pixels at image pixel (x, y) by ``image`` (transparency included)."""
        if self._pixmap is None:
            return
        x, y = x - int(self.pos().x()), y - int(self.pos().y())
        painter = QtGui.QPainter(self._pixmap)
        painter.setCompositionMode(QtGui.QPainter.CompositionMode_Source)
        painter.drawImage(x, y, image)
        painter.end()
        self.update(QtCore.QRectF(x, y, image.width(), image.height()))

    def boundingRect(self) -> QtCore.QRectF:
        return QtCore.QRectF(self._pixmap.rect()) if self._pixmap is not None else QtCore.QRectF()

    def paint(self, painter, option, widget=None) -> None:
        if self._pixmap is not None:
            rect = option.exposedRect
            painter.drawPixmap(rect, self._pixmap, rect)


class Canvas(QtWidgets.QGraphicsView):
    """Image view. Signals carry image pixel coordinates (x, y) as floats."""

    clicked = QtCore.pyqtSignal(float, float)
    strokeFinished = QtCore.pyqtSignal(object, bool)  # (N, 2) float points, erase
    polygonChanged = QtCore.pyqtSignal(int)  # number of points so far
    brushChanged = QtCore.pyqtSignal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QtWidgets.QGraphicsScene(self))
        self.setTransformationAnchor(QtWidgets.QGraphicsView.NoAnchor)  # zoom() keeps its own anchor
        self.setResizeAnchor(QtWidgets.QGraphicsView.AnchorViewCenter)
        self.setViewportUpdateMode(QtWidgets.QGraphicsView.SmartViewportUpdate)
        self.setBackgroundBrush(QtGui.QColor(40, 40, 44))
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMouseTracking(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scene = self.scene()
        self.image_item = scene.addPixmap(QtGui.QPixmap())
        self.base_item = OverlayItem()
        scene.addItem(self.base_item)
        self.base_item.setZValue(1)
        self.selected_item = OverlayItem()
        scene.addItem(self.selected_item)
        self.selected_item.setZValue(2)
        self.truth_item = scene.addPixmap(QtGui.QPixmap())
        self.truth_item.setZValue(2.5)
        self.patch_items: list[QtWidgets.QGraphicsRectItem] = []
        pen = QtGui.QPen(QtGui.QColor(255, 255, 255, 200), 0)
        self.stroke_item = scene.addPath(QtGui.QPainterPath(), pen)
        self.stroke_item.setZValue(4)
        self.polygon_item = scene.addPolygon(QtGui.QPolygonF(), QtGui.QPen(QtGui.QColor(255, 230, 0), 0),
                                             QtGui.QBrush(QtGui.QColor(255, 230, 0, 60)))
        self.polygon_item.setZValue(4)
        self.cursor_item = scene.addEllipse(0, 0, 1, 1, QtGui.QPen(QtGui.QColor(255, 255, 255), 0))
        self.cursor_item.setZValue(5)
        self.cursor_item.hide()
        self.message_item = scene.addSimpleText("")
        self.message_item.setBrush(QtGui.QColor(230, 230, 230))
        self.message_item.setZValue(6)
        self.tool = "select"
        self.brush_radius = 8.0
        self.polygon_points: list[tuple[float, float]] = []
        self._stroke: list[tuple[float, float]] | None = None
        self._pan_from: QtCore.QPoint | None = None
        self._space = False
        self._image_size = (0, 0)
        self._fitted = True  # keep fitting on resize until the user zooms
        self._zoom_anchor: tuple | None = None  # (image point, then the view's state) after the last zoom

    # ---- content ---------------------------------------------------------------------------------

    def set_image(self, rgb: np.ndarray | None, message: str = "") -> None:
        """Show (H, W, 3) uint8 RGB, or nothing but ``message`` (e.g. why the image is unreadable)."""
        self.set_overlay(None)
        self.set_selected_overlay(None)
        self.set_truth_overlay(None)
        self.set_patches([])
        self.cancel_polygon()
        if rgb is None:
            self.image_item.setPixmap(QtGui.QPixmap())
            self._image_size = (0, 0)
        else:
            h, w = rgb.shape[:2]
            rgb = np.ascontiguousarray(rgb)
            qimage = QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format_RGB888)
            self.image_item.setPixmap(QtGui.QPixmap.fromImage(qimage))
            self._image_size = (w, h)
        self.message_item.setText(message)
        w, h = self._image_size
        # room around the image, so that zooming at a point near its edge can keep that point under the cursor
        side = max(w, h)
        self.scene().setSceneRect(QtCore.QRectF(-side, -side, w + 2 * side, h + 2 * side) if w
                                  else self.message_item.boundingRect())
        self.fit()

    def set_overlay(self, image: QtGui.QImage | None) -> None:
        """The cached layer of all instances (an indexed QImage the size of the image), or None."""
        self.base_item.set_image(image)

    def update_overlay(self, image: QtGui.QImage, x: int, y: int) -> None:
        """Repaint part of the cached layer: ``image`` goes at image pixel (x, y)."""
        self.base_item.update_region(image, x, y)

    def set_truth_overlay(self, image: QtGui.QImage | None) -> None:
        """The ground-truth outlines layer (an image the size of the image), or None."""
        self.truth_item.setPixmap(QtGui.QPixmap() if image is None else QtGui.QPixmap.fromImage(image))

    def set_selected_overlay(self, image_and_offset) -> None:
        """(QImage of the selected instance's box, or a frame around it; (x, y) offset), or None."""
        if image_and_offset is None:
            self.selected_item.set_image(None)
            return
        image, offset = image_and_offset
        self.selected_item.set_image(image, offset)

    def update_selected_overlay(self, image: QtGui.QImage, x: int, y: int) -> None:
        """Repaint part of the selected instance's layer: ``image`` goes at image pixel (x, y)."""
        self.selected_item.update_region(image, x, y)

    def set_overlay_opacity(self, value: float) -> None:
        """0..1 for both overlay layers."""
        self.base_item.setOpacity(value)
        self.selected_item.setOpacity(min(1.0, value + 0.25))

    def set_patches(self, boxes: np.ndarray) -> None:
        """Draw boxes (K, 4) (x0, y0, x1, y1) as squares."""
        scene = self.scene()
        for item in self.patch_items:
            scene.removeItem(item)
        pen = QtGui.QPen(QtGui.QColor(0, 230, 255, 220), 0)
        self.patch_items = []
        for x0, y0, x1, y1 in np.asarray(boxes).reshape(-1, 4):
            item = scene.addRect(QtCore.QRectF(float(x0), float(y0), float(x1 - x0), float(y1 - y0)), pen)
            item.setZValue(3)
            self.patch_items.append(item)

    # ---- view ------------------------------------------------------------------------------------

    def fit(self) -> None:
        """Fit the whole image in the view."""
        w, h = self._image_size
        if w:
            self.fitInView(QtCore.QRectF(0, 0, w, h), Qt.KeepAspectRatio)
        self._fitted = True

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    def center_on(self, x: float, y: float) -> None:
        self.centerOn(QtCore.QPointF(x, y))
        self._fitted = False

    def actual_size(self) -> None:
        """One image pixel per screen pixel, keeping the point at the view centre."""
        self.zoom(1.0 / self.transform().m11())

    def zoom(self, factor: float, anchor: QtCore.QPoint | None = None) -> None:
        """Scale the view by ``factor`` (the scale stays within 0.02-64), keeping the image point under
        viewport position ``anchor`` (default: the view centre) where it is."""
        current = self.transform().m11()
        factor = max(0.02 / current, min(factor, 64.0 / current))
        if anchor is None:
            anchor = self.viewport().rect().center()
        bars = (self.horizontalScrollBar(), self.verticalScrollBar())
        last = self._zoom_anchor
        if last is not None and last[1] == self._view_state(anchor):
            point = last[0]  # the same wheel gesture: the scroll's rounding to whole pixels does not add up
        else:
            point = self.mapToScene(anchor)
        self.scale(factor, factor)
        moved = self.mapFromScene(point) - anchor
        bars[0].setValue(bars[0].value() + moved.x())
        bars[1].setValue(bars[1].value() + moved.y())
        self._zoom_anchor = (point, self._view_state(anchor))
        self._fitted = False

    def _view_state(self, anchor: QtCore.QPoint) -> tuple:
        """What decides which image point lies under viewport position ``anchor``."""
        return (QtCore.QPoint(anchor), self.horizontalScrollBar().value(), self.verticalScrollBar().value(),
                self.transform(), self.viewport().size())

    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:
        self.zoom(1.25 ** (event.angleDelta().y() / 120.0), event.position().toPoint())
        event.accept()

    # ---- tools -----------------------------------------------------------------------------------

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"tool must be one of {TOOLS}")
        self.tool = tool
        self.cancel_polygon()
        self.cursor_item.setVisible(tool in ("brush", "eraser"))
        self.viewport().setCursor(Qt.ArrowCursor if tool == "select" else Qt.CrossCursor)

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = float(max(0.5, min(radius, 500.0)))
        self.brushChanged.emit(self.brush_radius)
        self._move_cursor(self.cursor_item.rect().center())

    def cancel_polygon(self) -> None:
        self.polygon_points = []
        self.polygon_item.setPolygon(QtGui.QPolygonF())
        self.polygonChanged.emit(0)

    def take_polygon(self) -> np.ndarray:
        """The clicked polygon as (N, 2) float (x, y), clearing it."""
        points = np.array(self.polygon_points, np.float64).reshape(-1, 2)
        self.cancel_polygon()
        return points

    def undo_polygon_point(self) -> None:
        if self.polygon_points:
            self.polygon_points.pop()
            self._show_polygon()

    def _show_polygon(self) -> None:
        self.polygon_item.setPolygon(QtGui.QPolygonF([QtCore.QPointF(x, y) for x, y in self.polygon_points]))
        self.polygonChanged.emit(len(self.polygon_points))

    def _move_cursor(self, pos: QtCore.QPointF) -> None:
        r = self.brush_radius
        self.cursor_item.setRect(QtCore.QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))

    def _show_stroke(self) -> None:
        path = QtGui.QPainterPath()
        if self._stroke:
            path.moveTo(*self._stroke[0])
            for p in self._stroke[1:]:
                path.lineTo(*p)
            if len(self._stroke) == 1:
                path.lineTo(self._stroke[0][0] + 0.01, self._stroke[0][1])
        color = QtGui.QColor(255, 80, 80, 140) if self.tool == "eraser" else QtGui.QColor(255, 255, 255, 140)
        pen = QtGui.QPen(color, 2 * self.brush_radius + 1, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin)
        self.stroke_item.setPen(pen)
        self.stroke_item.setPath(path)

    # ---- mouse and keys --------------------------------------------------------------------------

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self._space):
            self._pan_from = event.pos()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            return
        if event.button() != Qt.LeftButton:
            return super().mousePressEvent(event)
        p = self.mapToScene(event.pos())
        if self.tool == "select":
            self.clicked.emit(p.x(), p.y())
        elif self.tool in ("brush", "eraser"):
            self._stroke = [(p.x(), p.y())]
            self._show_stroke()
        elif self.tool == "polygon":
            self.polygon_points.append((p.x(), p.y()))
            self._show_polygon()

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        if self._pan_from is not None:
            delta = event.pos() - self._pan_from
            self._pan_from = event.pos()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
            self._fitted = False
            return
        p = self.mapToScene(event.pos())
        self._move_cursor(p)
        if self._stroke is not None:
            self._stroke.append((p.x(), p.y()))
            self._show_stroke()

    def mouseReleaseEvent(self, event: QtGui.QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MiddleButton, Qt.LeftButton):
            self._pan_from = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space else
                                      Qt.ArrowCursor if self.tool == "select" else Qt.CrossCursor)
            return
        if event.button() == Qt.LeftButton and self._stroke is not None:
            points = np.array(self._stroke, np.float64)
            self._stroke = None
            self._show_stroke()
            self.strokeFinished.emit(points, self.tool == "eraser")

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QtGui.QKeyEvent) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().setCursor(Qt.ArrowCursor if self.tool == "select" else Qt.CrossCursor)
            return
        super().keyReleaseEvent(event)
