"""Mask conversions: polygons <-> masks for each format's own rasteriser, and checked RLE decoding.

Two polygon conventions exist, one per rasteriser:

- COCO (pycocotools): pixel (x, y) is the unit square [x, x+1) x [y, y+1); a polygon along pixel
  edges (integer corner coordinates) reproduces a mask exactly. ``mask_to_coco_polygons`` writes
  these.
- labelme and Cityscapes (PIL ``ImageDraw.polygon``): pixel (x, y) is the point (x, y) and the
  polygon's own edges are filled; a polygon through the centres of the boundary pixels reproduces
  a mask exactly. ``mask_to_pixel_polygons`` writes these.

Neither format has a polygon with a hole. A hole is kept by joining it to the outer ring with a
zero-width cut (a "keyhole"): the ring runs to the hole, around it and back along the same line,
so both rasterisers leave the hole empty.
"""

from __future__ import annotations

import cv2
import numpy as np
import shapely
from PIL import Image, ImageDraw

from ..core.rle import compressed_text, polygons_to_rle, rle_counts
from .errors import DatasetError


def _splice_holes(outer: np.ndarray, holes: list[np.ndarray]) -> np.ndarray:
    """Join each hole ring to the outer ring by a zero-width cut. Rings: (K, 2) float, unclosed.

    The hole nearest to the ring built so far is joined first, at its nearest vertex pair, so a
    cut does not cross another hole.
    """
    ring = outer
    holes = list(holes)
    while holes:
        best = None
        for h_index, hole in enumerate(holes):
            d = ((ring[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
            i, j = np.unravel_index(int(np.argmin(d)), d.shape)
            if best is None or d[i, j] < best[0]:
                best = (d[i, j], h_index, i, j)
        _, h_index, i, j = best
        hole = holes.pop(h_index)
        loop = np.concatenate([hole[j:], hole[: j + 1]])
        ring = np.concatenate([ring[: i + 1], loop, ring[i:]])
    return ring


def mask_to_coco_polygons(mask: np.ndarray) -> list[list[float]]:
    """mask: (H, W) bool -> COCO polygons [[x0, y0, x1, y1, ...], ...], one per connected part.

    Vertices lie on pixel corners, so pycocotools decodes the polygons to exactly ``mask``; holes
    are joined to their outer ring by a zero-width cut. An empty mask gives [].
    """
    mask = np.asarray(mask, bool)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(rows) == 0:
        return []
    y0, x0 = rows[0], cols[0]
    crop = mask[y0:rows[-1] + 1, x0:cols[-1] + 1]
    step = np.diff(np.pad(crop, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts = np.argwhere(step == 1) + (y0, x0)  # (row, x0) of each horizontal run, row-major
    ends = np.argwhere(step == -1) + (y0, x0)  # (row, x1) paired with starts
    row = starts[:, 0].astype(float)
    boxes = shapely.box(starts[:, 1].astype(float), row, ends[:, 1].astype(float), row + 1)
    union = shapely.simplify(shapely.union_all(boxes), 0)
    polygons = []
    for poly in getattr(union, "geoms", [union]):
        outer = np.asarray(poly.exterior.coords)[:-1]
        holes = [np.asarray(ring.coords)[:-1] for ring in poly.interiors]
        polygons.append(_splice_holes(outer, holes).ravel().tolist())
    return polygons


def mask_to_pixel_polygons(mask: np.ndarray, join_parts: bool = False) -> list[np.ndarray]:
    """mask: (H, W) bool -> polygons through boundary-pixel centres, each (K, 2) float [x, y].

    One polygon per connected part (8-connected), holes joined by zero-width cuts, so PIL's
    polygon fill (labelme, cityscapesscripts) gives back ``mask``. join_parts: join all parts
    into one polygon by further zero-width cuts (Cityscapes has one polygon per object); the
    cut between two separate parts is drawn by PIL as a one-pixel line.
    """
    mask = np.asarray(mask, bool)
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    hierarchy = hierarchy[0]
    rings = [c.reshape(-1, 2).astype(float) for c in contours]
    polygons = []
    for index, (_, _, child, parent) in enumerate(hierarchy):
        if parent >= 0:
            continue
        holes = []
        while child >= 0:
            holes.append(rings[child])
            child = hierarchy[child][0]
        polygons.append(_splice_holes(rings[index], holes))
    if join_parts and len(polygons) > 1:
        polygons = [_splice_holes(polygons[0], polygons[1:])]
    # a part of one or two pixels has a one- or two-point contour: repeat its last point so
    # every polygon has the 3 points labelme and Cityscapes require
    return [np.concatenate([p, np.repeat(p[-1:], max(0, 3 - len(p)), axis=0)]) for p in polygons]


def pil_polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise one polygon as labelme and cityscapesscripts do (PIL fill, edges included).

    points: (K, 2) float [x, y] in pixels. Returns (H, W) bool.
    """
    image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(image).polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1)
    return np.asarray(image, dtype=bool)


def check_points(points, where: str, width: int, height: int, min_points: int = 3) -> np.ndarray:
    """Validate a point list from a file. Returns (K, 2) float64 [x, y].

    Raises DatasetError (prefixed by ``where``, which names the file and the instance) unless
    ``points`` holds at least ``min_points`` finite [x, y] pairs lying within one image size of
    the image (points far outside would make the rasterisers allocate without bound).
    """
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise DatasetError(f"{where}: points must be a list of [x, y] numbers") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise DatasetError(f"{where}: points must be a list of [x, y] pairs")
    if len(array) < min_points:
        raise DatasetError(f"{where}: polygon has {len(array)} points, at least {min_points} are needed")
    if not np.isfinite(array).all():
        raise DatasetError(f"{where}: polygon has a non-finite coordinate")
    far = (array[:, 0] < -width) | (array[:, 0] > 2 * width) | (array[:, 1] < -height) | (array[:, 1] > 2 * height)
    if far.any():
        x, y = array[far][0]
        raise DatasetError(f"{where}: polygon point ({x:g}, {y:g}) lies far outside the {width}x{height} image")
    return array


def coco_polygons_to_rle(polygons, where: str, width: int, height: int) -> dict:
    """COCO polygons [[x0, y0, x1, y1, ...], ...] -> compressed RLE of the (H, W) union, as pycocotools does.

    Raises DatasetError (prefixed by ``where``) for an empty list or a polygon with fewer than
    3 points, odd length, non-numbers or points far outside the image.
    """
    if not isinstance(polygons, list) or not polygons:
        raise DatasetError(f"{where}: segmentation must be a non-empty list of polygons or an RLE dict")
    flat = []
    for k, poly in enumerate(polygons):
        if not isinstance(poly, list) or len(poly) % 2:
            raise DatasetError(f"{where}: polygon {k} must be a flat list [x0, y0, x1, y1, ...] of even length")
        pairs = [poly[i:i + 2] for i in range(0, len(poly), 2)]
        points = check_points(pairs, f"{where}, polygon {k}", width, height)
        flat.append(points.ravel().tolist())
    return polygons_to_rle(flat, height, width)


def checked_rle(rle, where: str, width: int, height: int) -> dict:
    """Validate a COCO RLE from a file and return it compressed {'size': [H, W], 'counts': str}.

    Accepts compressed (string counts) and uncompressed (list counts) RLE. Raises DatasetError
    (prefixed by ``where``) when the size disagrees with the width x height image, or when the
    counts are malformed or do not add up to H * W pixels (pycocotools would read past its buffer).
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise DatasetError(f"{where}: RLE must be a dict with 'size' and 'counts'")
    size = rle["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise DatasetError(f"{where}: RLE size must be [height, width], got {size!r}")
    if size != [height, width]:
        raise DatasetError(f"{where}: RLE size {size} disagrees with the image size [height, width] = [{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in counts):
            raise DatasetError(f"{where}: uncompressed RLE counts must be non-negative integers")
        runs = counts
    elif isinstance(counts, str):
        try:
            runs = rle_counts(rle).tolist()
        except ValueError:
            raise DatasetError(f"{where}: compressed RLE counts string is malformed") from None
    else:
        raise DatasetError(f"{where}: RLE counts must be a string or a list of integers")
    if sum(runs) != height * width:
        raise DatasetError(f"{where}: RLE covers {sum(runs)} pixels, the {width}x{height} image has {height * width}")
    return compressed_text({"size": size, "counts": counts})

