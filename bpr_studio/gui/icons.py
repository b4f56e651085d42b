"""The toolbar's icons, drawn with QPainter in one line style (no image files to ship or load).

Each icon is a list of strokes on a 64 x 64 grid: ``("line", points)``, ``("shape", points)`` (closed,
filled with the icon's fill colour), ``("dots", points)``, ``("circle" | "ring" | "star", (x, y, r))``.
"""

from __future__ import annotations

from PyQt5 import QtCore, QtGui
from PyQt5.QtCore import Qt

INK = QtGui.QColor(60, 70, 80)
ACCENT = QtGui.QColor(42, 125, 225)  # refinement
GREEN = QtGui.QColor(46, 150, 70)
RED = QtGui.QColor(200, 60, 50)

_ICONS = {
    "open": (INK, QtGui.QColor(250, 215, 120),
             [("shape", [(6, 18), (24, 18), (30, 24), (58, 24), (58, 52), (6, 52)])]),
    "export": (INK, None, [("line", [(10, 38), (10, 54), (54, 54), (54, 38)]), ("line", [(32, 44), (32, 8)]),
                           ("line", [(20, 20), (32, 8), (44, 20)])]),
    "accept": (GREEN, None, [("line", [(12, 34), (26, 48), (52, 16)])]),
    "reject": (RED, None, [("line", [(16, 16), (48, 48)]), ("line", [(48, 16), (16, 48)])]),
    "select": (INK, QtGui.QColor(255, 255, 255),
               [("shape", [(18, 6), (18, 50), (29, 40), (37, 57), (45, 53), (37, 37), (51, 37)])]),
    "brush": (INK, INK, [("circle", (32, 32, 11)), ("ring", (32, 32, 24))]),
    "eraser": (INK, QtGui.QColor(240, 150, 160), [("shape", [(12, 42), (34, 20), (52, 38), (30, 60)]),
                                                  ("line", [(23, 31), (41, 49)])]),
    "polygon": (INK, None, [("shape", [(32, 8), (56, 26), (46, 54), (18, 54), (8, 26)]),
                            ("dots", [(32, 8), (56, 26), (46, 54), (18, 54), (8, 26)])]),
    "refine_image": (ACCENT, None, [("line", [(6, 12), (6, 58), (58, 58), (58, 12), (6, 12)]),
                                    ("star", (32, 35, 17))]),
    "refine_selected": (ACCENT, None, [("line", [(6, 20), (6, 6), (20, 6)]), ("line", [(44, 6), (58, 6), (58, 20)]),
                                       ("line", [(58, 44), (58, 58), (44, 58)]),
                                       ("line", [(20, 58), (6, 58), (6, 44)]), ("star", (32, 32, 17))]),
    "refine_all": (ACCENT, None, [("line", [(14, 6), (58, 6), (58, 48)]), ("line", [(4, 16), (48, 16), (48, 60),
                                                                                    (4, 60), (4, 16)]),
                                  ("star", (26, 38, 14))]),
}


def _star(x: float, y: float, r: float) -> QtGui.QPolygonF:
    """A four-pointed sparkle centred at (x, y), points r from the centre."""
    k = r * 0.28
    points = [(x, y - r), (x + k, y - k), (x + r, y), (x + k, y + k),
              (x, y + r), (x - k, y + k), (x - r, y), (x - k, y - k)]
    return QtGui.QPolygonF([QtCore.QPointF(px, py) for px, py in points])


def icon(name: str) -> QtGui.QIcon:
    """The icon ``name`` (a key of the table above), drawn at 64 px and scaled by Qt."""
    color, fill, strokes = _ICONS[name]
    pixmap = QtGui.QPixmap(64, 64)
    pixmap.fill(Qt.transparent)
    painter = QtGui.QPainter(pixmap)
    painter.setRenderHint(QtGui.QPainter.Antialiasing)
    painter.setPen(QtGui.QPen(color, 5, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin))
    for kind, data in strokes:
        if kind == "star":
            painter.setBrush(color)
            painter.drawPolygon(_star(*data))
            continue
        if kind in ("circle", "ring"):
            x, y, r = data
            painter.setBrush(fill if kind == "circle" else Qt.NoBrush)
            painter.drawEllipse(QtCore.QPointF(x, y), r, r)
            continue
        polygon = QtGui.QPolygonF([QtCore.QPointF(x, y) for x, y in data])
        if kind == "line":
            painter.drawPolyline(polygon)
        elif kind == "shape":
            painter.setBrush(fill if fill is not None else Qt.NoBrush)
            painter.drawPolygon(polygon)
        else:  # dots
            painter.setBrush(color)
            for point in polygon:
                painter.drawEllipse(point, 4, 4)
    painter.end()
    return QtGui.QIcon(pixmap)
