"""Overlay images for the canvas: instance label maps with colour tables, the selected instance, the refinement diff.

Numpy in, QImage out; drawing only (which pixels belong to which instance comes from the session).
The label map of all instances is one byte per pixel (an indexed QImage): colour, visibility and
colour-by-class changes only swap its colour table, so an 8000 px image is not redrawn for them.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
from PyQt5 import QtGui

from ..session.model import crop_box, crop_window, union_box


SLOTS = 127
"""Label values 1..127 fill instance j (slot j % 127 + 1), 128..254 its outline."""

DIFF_ADDED = (40, 220, 90)
DIFF_REMOVED = (240, 60, 60)


def palette_color(k: int) -> tuple[int, int, int]:
    """A distinct, bright RGB colour for index k (golden-ratio hues)."""
    h = (k * 0.618033988749895 + 0.1) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def slot(j: int) -> int:
    return j % SLOTS + 1


def outline_of(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """(h, w) bool pixels of ``mask`` that touch the background (a band ``width`` pixels wide)."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), iterations=width, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~eroded.astype(bool)


def label_map(shape: tuple[int, int], crops) -> np.ndarray:
    """(H, W) uint8 label map of instances drawn in order (later ones on top).

    crops: iterable of (j, (x0, y0, (h, w) bool) or None), the instance masks inside their boxes.
    Fill pixels get slot(j), outline pixels slot(j) + SLOTS.
    """
    labels = np.zeros(shape, np.uint8)
    paint_labels(labels, crops, (0, 0, shape[1], shape[0]))
    return labels


def paint_labels(labels: np.ndarray, crops, region: tuple[int, int, int, int]) -> None:
    """Redraw the part ``region`` (x0, y0, x1, y1) of a label map from all instance crops, in order."""
    rx0, ry0, rx1, ry1 = region
    labels[ry0:ry1, rx0:rx1] = 0
    for j, crop in crops:
        if crop is None:
            continue
        x0, y0, mask = crop
        x1, y1 = x0 + mask.shape[1], y0 + mask.shape[0]
        ix0, iy0, ix1, iy1 = max(x0, rx0), max(y0, ry0), min(x1, rx1), min(y1, ry1)
        if ix0 >= ix1 or iy0 >= iy1:
            continue
        part = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
        window = labels[iy0:iy1, ix0:ix1]
        window[mask[part]] = slot(j)
        window[_outline_part(mask, iy0 - y0, iy1 - y0, ix0 - x0, ix1 - x0)] = slot(j) + SLOTS


def _outline_part(mask: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``outline_of(mask)[r0:r1, c0:c1]``, eroding only that part and a 1-pixel margin (a brush
    stroke repaints a small window of a large instance)."""
    m0, n0 = max(r0 - 1, 0), max(c0 - 1, 0)
    around = outline_of(mask[m0:min(r1 + 1, mask.shape[0]), n0:min(c1 + 1, mask.shape[1])])
    return around[r0 - m0:r1 - m0, c0 - n0:c1 - n0]  # the margin makes the 3x3 erosion exact inside


def contains(outer, inner) -> bool:
    """Whether box ``inner`` lies inside box ``outer`` (None inside anything)."""
    return inner is None or (outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2]
                             and inner[3] <= outer[3])


def diff_map(shape: tuple[int, int], pairs) -> np.ndarray:
    """(H, W) uint8: 1 where a refined mask added pixels to its coarse mask, 2 where it removed some.

    pairs: iterable of (coarse crop, refined crop), each (x0, y0, (h, w) bool) or None.
    """
    labels = np.zeros(shape, np.uint8)
    paint_diff(labels, pairs, (0, 0, shape[1], shape[0]))
    return labels


def paint_diff(labels: np.ndarray, pairs, region: tuple[int, int, int, int]) -> None:
    """Redraw the part ``region`` (x0, y0, x1, y1) of a diff map from all (coarse, refined) crop pairs."""
    rx0, ry0, rx1, ry1 = region
    labels[ry0:ry1, rx0:rx1] = 0
    for coarse, refined in pairs:
        box = union_box(crop_box(coarse), crop_box(refined))
        if box is None:
            continue
        x0, y0, x1, y1 = max(box[0], rx0), max(box[1], ry0), min(box[2], rx1), min(box[3], ry1)
        if x0 >= x1 or y0 >= y1:
            continue
        c = crop_window(coarse, (x0, y0, x1, y1))
        r = crop_window(refined, (x0, y0, x1, y1))
        window = labels[y0:y1, x0:x1]
        window[r & ~c] = 1
        window[c & ~r] = 2


def indexed_image(labels: np.ndarray, colors: list[int]) -> QtGui.QImage:
    """An indexed QImage over ``labels`` (H, W) uint8 with a 256-entry ARGB colour table (a copy, owns its data)."""
    h, w = labels.shape
    labels = np.ascontiguousarray(labels)
    image = QtGui.QImage(labels.data, w, h, w, QtGui.QImage.Format_Indexed8)
    image.setColorTable(colors)
    return image.copy()


def instance_colors(colors_rgb: dict[int, tuple[int, int, int]], hidden: set[int], fill_alpha: int = 120) -> list[int]:
    """256-entry colour table for a label map. colors_rgb: {instance j: (r, g, b)}; hidden: instances drawn transparent."""
    table = [0] * 256
    for j, (r, g, b) in colors_rgb.items():
        if j in hidden:
            continue
        table[slot(j)] = QtGui.qRgba(r, g, b, fill_alpha)
        table[slot(j) + SLOTS] = QtGui.qRgba(r, g, b, 255)
    return table


def outline_colors(rgb: tuple[int, int, int] = (255, 255, 255)) -> list[int]:
    """256-entry colour table drawing only the outlines of a label map, all in one colour."""
    table = [0] * 256
    for value in range(SLOTS + 1, 2 * SLOTS + 1):
        table[value] = QtGui.qRgba(*rgb, 255)
    return table


def diff_colors(alpha: int = 200) -> list[int]:
    table = [0] * 256
    table[1] = QtGui.qRgba(*DIFF_ADDED, alpha)
    table[2] = QtGui.qRgba(*DIFF_REMOVED, alpha)
    return table


def selected_image(crop, rgb: tuple[int, int, int], window=None) -> tuple[QtGui.QImage, tuple[int, int]] | None:
    """Indexed QImage of one instance crop (x0, y0, (h, w) bool): fill, a white 2 px edge with a
    coloured 1 px line on it; and its (x, y) offset. None for None.

    window: (x0, y0, x1, y1) image pixels to draw instead of the crop's box (a frame around it, or a
    small part of it after a stroke); transparent outside the mask, exactly as the whole drawing there.
    """
    if window is None:
        if crop is None:
            return None
        window = crop_box(crop)
    x0, y0, x1, y1 = window
    levels = np.zeros((y1 - y0, x1 - x0), np.uint8)
    box = crop_box(crop)  # nothing is drawn outside the mask's box
    ix0, iy0, ix1, iy1 = (0, 0, 0, 0) if box is None else \
        (max(x0, box[0]), max(y0, box[1]), min(x1, box[2]), min(y1, box[3]))
    if ix0 < ix1 and iy0 < iy1:
        # the 2 px edge band of a pixel depends on its 5 x 5 neighbourhood: draw with a 2 px margin
        mask = crop_window(crop, (ix0 - 2, iy0 - 2, ix1 + 2, iy1 + 2))
        inner = mask.astype(np.uint8)
        inner += outline_of(mask, 2)
        inner += outline_of(mask, 1)  # 1 fill, 2 edge band, 3 boundary line
        levels[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = inner[2:-2, 2:-2]
    table = [0, QtGui.qRgba(*rgb, 150), QtGui.qRgba(255, 255, 255, 255), QtGui.qRgba(*rgb, 255)] + [0] * 252
    return indexed_image(levels, table), (x0, y0)
