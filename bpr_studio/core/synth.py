"""Synthetic scenes: textured objects with exact instance masks, made from scikit-image's bundled images.

Every scene is a background (a crop of a photograph or a tinted texture) with a few clutter shapes
that are not instances, then 1-6 objects painted in order, each filled with another texture or
photograph crop under a random lighting gradient. Shapes have real-looking boundaries: smooth
random contours, straight-edged polygons, the scikit-image horse silhouette, blobs with thin limbs,
figure-like unions of ellipses, holes, and occlusion by the objects painted later. With probability
``parts``, an object also gets inner parts: patches of another appearance inside it (windows,
stripes, clothing), so that strong edges inside an object are not taken for its boundary. Shapes are
drawn at twice the resolution and area-averaged, so edges are anti-aliased like a camera's; the
ground truth is that coverage thresholded at ``edge_coverage`` (0.5 by default). The image is then
slightly blurred, noised and JPEG-compressed.

Only images that ship inside the scikit-image wheel are used (no download).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


CATEGORIES = {1: "blob", 2: "polygon", 3: "animal", 4: "branchy", 5: "figure"}

_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
           "colorwheel", "stereo_motorcycle")
_TEXTURES = ("brick", "grass", "gravel", "camera", "moon", "page", "text", "coins", "cell", "clock")


@lru_cache(maxsize=1)
def _sources() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(photographs as (H, W, 3) uint8 RGB, textures as (H, W) uint8 gray), loaded once."""
    import skimage.data as data

    photos = []
    for name in _PHOTOS:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image
        photos.append(np.ascontiguousarray(image[..., :3]))
    textures = [np.ascontiguousarray(getattr(data, name)()) for name in _TEXTURES]
    return photos, textures


@lru_cache(maxsize=1)
def _horse() -> np.ndarray:
    """(h, w) uint8 silhouette of the scikit-image horse (255 = horse), cropped to its box."""
    import skimage.data as data

    horse = (~data.horse()).astype(np.uint8) * 255
    ys, xs = np.nonzero(horse)
    return horse[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _crop(source: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of ``source`` at a random scale, flip and rotation, resized to (height, width)."""
    if rng.random() < 0.5:
        source = np.rot90(source, int(rng.integers(1, 4)))
    sh, sw = source.shape[:2]
    scale = np.exp(rng.uniform(np.log(0.4), np.log(1.6)))
    ch = int(np.clip(height / scale, 8, sh))
    cw = int(np.clip(width / scale, 8, sw))
    y = int(rng.integers(0, sh - ch + 1))
    x = int(rng.integers(0, sw - cw + 1))
    crop = np.ascontiguousarray(source[y:y + ch, x:x + cw])
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)


def _appearance(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(height, width, 3) float32 RGB in 0-255: a photograph crop or a two-colour tinted texture,
    with random contrast and a linear lighting gradient."""
    photos, textures = _sources()
    if rng.random() < 0.5:
        image = _crop(photos[int(rng.integers(len(photos)))], rng, height, width).astype(np.float32)
        if rng.random() < 0.3:  # shuffle the colour channels for new colours
            image = image[..., rng.permutation(3)]
    else:
        gray = _crop(textures[int(rng.integers(len(textures)))], rng, height, width).astype(np.float32) / 255.0
        dark, light = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        image = dark + gray[..., None] * (light - dark)
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = mean + (image - mean) * rng.uniform(0.5, 1.3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
    image = image * (1.0 + rng.uniform(-0.4, 0.4) * (ramp - ramp.mean()))[..., None]
    return np.clip(image, 0, 255)


def _radial_contour(rng: np.random.Generator, radius: float, roughness: float) -> np.ndarray:
    """(256, 2) float32 points of a smooth random star-shaped contour around (0, 0)."""
    theta = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    r = np.ones_like(theta)
    for k in range(1, 9):
        r += rng.normal(0, roughness / k ** 1.2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.25, None)
    sx, sy = np.exp(rng.normal(0, 0.25, 2))
    return np.stack([r * np.cos(theta) * sx, r * np.sin(theta) * sy], axis=1).astype(np.float32)


def _fill(canvas: np.ndarray, points: np.ndarray, value: int = 255) -> None:
    cv2.fillPoly(canvas, [np.round(points * 4).astype(np.int32)], value, lineType=cv2.LINE_8, shift=2)


def _shape(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    """(size, size) uint8 canvas with one shape of category ``kind`` drawn in 255."""
    canvas = np.zeros((size, size), np.uint8)
    c = size / 2.0
    if kind == 1:  # smooth blob
        _fill(canvas, _radial_contour(rng, size * 0.35, rng.uniform(0.05, 0.35)) + c)
    elif kind == 2:  # straight edges: rotated (rounded) rectangle or random polygon
        if rng.random() < 0.5:
            w, h = rng.uniform(0.3, 0.9, 2) * size
            box = cv2.boxPoints(((c, c), (w, h), rng.uniform(0, 180)))
            _fill(canvas, box)
            if rng.random() < 0.5:
                k = int(rng.integers(3, max(4, size // 8)))
                canvas = cv2.morphologyEx(canvas, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        else:
            n = int(rng.integers(3, 9))
            theta = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(0.2, 0.45, n) * size
            _fill(canvas, np.stack([c + r * np.cos(theta), c + r * np.sin(theta)], 1))
    elif kind == 3:  # the horse silhouette, stretched and flipped
        horse = _horse()
        aspect = np.exp(rng.normal(0, 0.2))
        hh, hw = horse.shape
        scale = 0.9 * size / max(hh * aspect, hw)
        resized = cv2.resize(horse, (max(1, int(hw * scale)), max(1, int(hh * scale * aspect))),
                             interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            resized = resized[:, ::-1]
        rh, rw = resized.shape
        y0, x0 = (size - rh) // 2, (size - rw) // 2
        canvas[y0:y0 + rh, x0:x0 + rw] = np.where(resized >= 128, 255, 0)
    elif kind == 4:  # blob with thin limbs (legs, antennae, poles, branches)
        _fill(canvas, _radial_contour(rng, size * 0.22, rng.uniform(0.05, 0.25)) + c)
        for _ in range(int(rng.integers(1, 6))):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.25, 0.48) * size
            thickness = int(rng.integers(2, max(3, size // 12)))
            bend = rng.normal(0, 0.3)
            pts = [(c + t * length * np.cos(angle + bend * t), c + t * length * np.sin(angle + bend * t))
                   for t in np.linspace(0, 1, 6)]
            cv2.polylines(canvas, [np.round(np.array(pts) * 4).astype(np.int32)], False, 255, thickness,
                          lineType=cv2.LINE_8, shift=2)
    else:  # figure: body, head and limbs as ellipses
        bw, bh = size * rng.uniform(0.12, 0.22), size * rng.uniform(0.2, 0.3)
        cv2.ellipse(canvas, (int(c), int(c)), (int(bw), int(bh)), rng.uniform(-15, 15), 0, 360, 255, -1)
        head = int(bw * rng.uniform(0.5, 0.8))
        cv2.circle(canvas, (int(c + rng.normal(0, 3)), int(c - bh - head * 0.8)), head, 255, -1)
        for side in (-1, 1):
            for top in (True, False):
                x = c + side * bw * (0.8 if top else 0.4)
                y = c - bh * 0.6 if top else c + bh * 0.8
                length = size * rng.uniform(0.15, 0.3)
                angle = np.deg2rad(90 + side * rng.uniform(5, 40 if top else 20))
                end = (x + side * length * abs(np.cos(angle)), y + length * np.sin(angle))
                cv2.line(canvas, (int(x), int(y)), (int(end[0]), int(end[1])), 255,
                         int(max(2, bw * rng.uniform(0.25, 0.5))))
    if kind in (1, 2, 4) and rng.random() < 0.25:  # holes
        for _ in range(int(rng.integers(1, 3))):
            hole = _radial_contour(rng, size * rng.uniform(0.04, 0.1), 0.2) + c + rng.normal(0, size * 0.08, 2)
            _fill(canvas, hole, 0)
    return canvas


def make_scene(rng: np.random.Generator, height: int | None = None, width: int | None = None,
               max_objects: int = 6, min_area: int = 64, parts: float = 0.0,
               edge_coverage: float = 0.5, shadows: float = 0.0) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """One synthetic scene.

    rng: the random source. height, width: image size in pixels (random in 240-420 when None).
    parts: probability that an object gets inner parts of another appearance (``bpr-studio synth``
    uses 0.5; 0 draws no random numbers for them, so scenes of earlier sets are reproduced exactly).
    edge_coverage: in [0.5, 1): the share of an edge pixel an object must cover to own it; above 0.5,
    mixed edge pixels of an object against what lies behind it belong to neither (the image is the same).
    shadows: probability that an object casts a shadow (:func:`_cast_shadow`) onto what lies behind it;
    the shadow belongs to no mask (0 draws no random numbers for it, as ``parts``).
    Returns (image (H, W, 3) uint8 RGB, masks: list of (H, W) bool, category ids: list of int from
    :data:`CATEGORIES`); masks are exact (the visible part of each object after occlusion) and
    each has at least ``min_area`` pixels.
    """
    for name, value in (("parts", parts), ("shadows", shadows)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    if not 0.5 <= edge_coverage < 1.0:  # below one half, an edge pixel could belong to two masks
        raise ValueError(f"edge_coverage must be in [0.5, 1), got {edge_coverage}")
    height = height or int(rng.integers(240, 421))
    width = width or int(rng.integers(240, 421))
    canvas = _appearance(rng, height, width)
    for _ in range(int(rng.integers(0, 4))):  # clutter: edges that belong to no instance
        _paint(canvas, rng, int(rng.integers(1, 6)), None)
    masks, kinds = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        kind = int(rng.integers(1, 6))
        coverage = _paint(canvas, rng, kind, canvas if rng.random() < 0.15 else None, parts)
        if shadows > 0 and rng.random() < shadows:
            _cast_shadow(canvas, coverage, rng)
        visible = coverage >= edge_coverage
        masks = [m & (coverage < 1.0 - edge_coverage) for m in masks]  # what it leaves of those behind
        masks.append(visible)
        kinds.append(kind)
    image = canvas
    sigma = rng.uniform(0, 0.8)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image = image + rng.normal(0, rng.uniform(0, 5), image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
    image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1].copy()
    keep = [i for i, m in enumerate(masks) if np.count_nonzero(m) >= min_area]
    return image, [masks[i] for i in keep], [kinds[i] for i in keep]


def _cast_shadow(canvas: np.ndarray, coverage: np.ndarray, rng: np.random.Generator) -> None:
    """Darken ``canvas`` (H, W, 3) float32, in place, with the shadow of the object whose (H, W)
    coverage is given, where the object does not cover it: its silhouette squashed towards its
    bottom (0.15-1x), sheared (up to 1 px per px), moved by up to a fifth of its size, softened
    (blur of 0.5 px to a tenth of its size) and 25-75% dark. What the shadow falls on keeps its
    mask; the dark region touching the object is what a refiner must not take for it (a car's
    shadow on the road)."""
    rows = np.flatnonzero(coverage.max(axis=1) > 0)
    if rows.size == 0:
        return
    size = float(rows[-1] - rows[0] + 1)
    bottom = float(rows[-1])
    squash, shear = rng.uniform(0.15, 1.0), rng.uniform(-1.0, 1.0)
    dx, dy = rng.uniform(-0.2, 0.2, 2) * size
    # x' = x + shear (y - bottom) + dx, y' = bottom + squash (y - bottom) + dy
    warp = np.float32([[1, shear, dx - shear * bottom], [0, squash, (1 - squash) * bottom + dy]])
    height, width = coverage.shape
    shadow = cv2.warpAffine(coverage, warp, (width, height), flags=cv2.INTER_LINEAR)
    shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(0.5, max(0.6, 0.1 * size)))
    canvas *= (1 - rng.uniform(0.25, 0.75) * shadow * (1 - coverage))[..., None]


def _add_inner_parts(fill: np.ndarray, rng: np.random.Generator, x0: int, y0: int, x1: int, y1: int,
                     size: int) -> None:
    """Paint 1-4 parts of other appearances into the window [y0:y1, x0:x1] of ``fill`` (H, W, 3)
    float32, in place: rotated rectangles (windows, panels), ellipses (faces, wheels) or bands
    (stripes, belts), 10-50% of the object's ``size``, anti-aliased. The object's coverage, applied
    later, keeps only what falls inside the object."""
    h, w = y1 - y0, x1 - x0
    for _ in range(int(rng.integers(1, 5))):
        part = np.zeros((2 * h, 2 * w), np.uint8)  # drawn at 2x, then area-averaged
        cx, cy = rng.uniform(0, 2 * w), rng.uniform(0, 2 * h)
        a, b = rng.uniform(0.1, 0.5, 2) * size  # half-sides at 2x = full sides at 1x
        angle = rng.uniform(0, 180)
        style = rng.random()
        if style < 0.4:
            _fill(part, cv2.boxPoints(((cx, cy), (2 * a, 2 * b), angle)))
        elif style < 0.7:
            cv2.ellipse(part, (int(cx), int(cy)), (int(a), int(b)), angle, 0, 360, 255, -1)
        else:
            _fill(part, cv2.boxPoints(((cx, cy), (8 * size, rng.uniform(0.05, 0.25) * 2 * size), angle)))
        alpha = cv2.resize(part.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)[..., None]
        if rng.random() < 0.5:  # a darker or lighter version of the object (windows, shadows)
            other = fill[y0:y1, x0:x1] * rng.uniform(0.3, 1.7)
        else:
            other = _appearance(rng, h, w)
        fill[y0:y1, x0:x1] = alpha * np.clip(other, 0, 255) + (1 - alpha) * fill[y0:y1, x0:x1]


def _paint(canvas: np.ndarray, rng: np.random.Generator, kind: int, like: np.ndarray | None,
           parts: float = 0.0) -> np.ndarray:
    """Paint one object of category ``kind`` at a random place and size into ``canvas`` (H, W, 3)
    float32 (in place). like: if given, fill it with a shifted copy of this image (low contrast).
    parts: probability of inner parts (see make_scene). Returns its (H, W) float32 coverage in [0, 1]."""
    height, width = canvas.shape[:2]
    size = int(np.exp(rng.uniform(np.log(40), np.log(1.1 * min(height, width)))))
    shape = _shape(rng, kind, 2 * size)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 360)
        rot = cv2.getRotationMatrix2D((size, size), angle, 1.0)
        shape = cv2.warpAffine(shape, rot, (2 * size, 2 * size), flags=cv2.INTER_LINEAR)
    alpha_local = cv2.resize(shape.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_AREA)
    x0 = int(rng.integers(-size // 3, width - 2 * size // 3))
    y0 = int(rng.integers(-size // 3, height - 2 * size // 3))
    coverage = np.zeros((height, width), np.float32)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + size, width), min(y0 + size, height)
    if cx1 <= cx0 or cy1 <= cy0:
        return coverage
    coverage[cy0:cy1, cx0:cx1] = alpha_local[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    if like is not None:
        dy, dx = rng.integers(-size, size + 1, 2)
        fill = np.roll(like, (int(dy), int(dx)), axis=(0, 1)) * rng.uniform(0.8, 1.2)
    else:
        fill = _appearance(rng, height, width)
    if parts > 0 and rng.random() < parts:
        _add_inner_parts(fill, rng, cx0, cy0, cx1, cy1, size)
    a = coverage[cy0:cy1, cx0:cx1, None]
    canvas[cy0:cy1, cx0:cx1] = a * fill[cy0:cy1, cx0:cx1] + (1 - a) * canvas[cy0:cy1, cx0:cx1]
    return coverage

