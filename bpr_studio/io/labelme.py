"""labelme files: one JSON per image, beside (or pointing at) the image, in and out.

Reading: shapes with the same label and the same non-null ``group_id`` form one instance;
a shape with ``group_id`` null is an instance of its own (as labelme's own converters do).
Area shapes are read: ``polygon``, ``rectangle``, ``circle`` (rasterised with PIL as labelme
does) and ``mask`` (a base64 PNG of the box ``points`` = [[xmin, ymin], [xmax, ymax]], inclusive).
``point``, ``line`` and ``linestrip`` shapes enclose no area and are left out. The label
``__ignore__`` (labelme's convention for regions to ignore) becomes a crowd instance.
Category ids are given to the labels in sorted order, from 1.

Writing: an instance without holes becomes one polygon shape per connected part (vertices at
boundary-pixel centres, so labelme's rasteriser gives back the mask; several parts share a
``group_id``); an instance with a hole becomes one ``mask`` shape, which labelme shows and edits.
Scores are kept in a ``score`` key of the shape and crowd flags in ``iscrowd`` (labelme keeps
unknown keys when it saves).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from ..core.rle import encode_rle
from .atomic import atomic_copy, atomic_write_json
from .dataset import Dataset, ImageRecord, Instance
from .errors import DatasetError, collected
from .images import IMAGE_SUFFIXES, check_image_size, image_size
from .jsonfile import is_int, is_number, read_json
from .masks import check_points, mask_to_pixel_polygons, pil_polygon_mask

Errors = list[tuple[Path, str]] | None

IGNORE_LABEL = "__ignore__"
_AREA_SHAPES = {"polygon", "rectangle", "circle", "mask"}
_LINE_SHAPES = {"point", "points", "line", "linestrip"}
_SHAPE_KEYS = {"label", "points", "group_id", "shape_type", "flags", "description", "mask", "score", "iscrowd"}


def _decode_mask_shape(shape: dict, where: str, width: int, height: int) -> np.ndarray:
    points = check_points(shape.get("points"), where, width, height, min_points=2)
    data = shape.get("mask")
    if not isinstance(data, str) or not data:
        raise DatasetError(f"{where}: a mask shape needs its 'mask' as a base64 PNG string")
    try:
        raw = np.frombuffer(base64.b64decode(data), np.uint8)
    except (ValueError, TypeError):
        raise DatasetError(f"{where}: 'mask' is not valid base64") from None
    crop = cv2.imdecode(raw, cv2.IMREAD_GRAYSCALE) if raw.size else None
    if crop is None:
        raise DatasetError(f"{where}: 'mask' is not a readable PNG")
    x0, y0 = int(points[0][0]), int(points[0][1])
    h, w = crop.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise DatasetError(f"{where}: mask of {w}x{h} pixels at ({x0}, {y0}) does not fit in the {width}x{height} image")
    mask = np.zeros((height, width), bool)
    mask[y0:y0 + h, x0:x0 + w] = crop > 0
    return mask


def _shape_mask(shape: dict, where: str, width: int, height: int) -> np.ndarray:
    """Rasterise one labelme area shape as labelme's ``shape_to_mask`` does. Returns (H, W) bool."""
    kind = shape.get("shape_type") or "polygon"
    if kind == "mask":
        return _decode_mask_shape(shape, where, width, height)
    if kind == "polygon":
        return pil_polygon_mask(check_points(shape.get("points"), where, width, height), height, width)
    points = check_points(shape.get("points"), where, width, height, min_points=2)
    if len(points) != 2:
        raise DatasetError(f"{where}: a {kind} shape must have exactly 2 points, it has {len(points)}")
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    (x0, y0), (x1, y1) = points
    if kind == "rectangle":
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    else:  # circle: centre and a point on the circle
        r = float(np.hypot(x1 - x0, y1 - y0))
        draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=1, fill=1)
    return np.asarray(image, dtype=bool)


def _find_image(json_path: Path, data: dict) -> Path:
    name = data.get("imagePath")
    if isinstance(name, str) and name:
        candidate = json_path.parent / name.replace("\\", "/")
        if candidate.is_file():
            return candidate
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        candidate = json_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{json_path}: image not found (imagePath {name!r}, nor an image named {json_path.stem}.* beside it)")


def _read_labelme_file(json_path: Path, errors: Errors,
                       in_folder: bool = False) -> tuple[ImageRecord, list[tuple[str, Instance]]] | None:
    """One labelme JSON -> (record without instances, [(label, instance with category_id 0)]).

    in_folder: the file was found in a folder; None when it is some other JSON (no 'shapes' nor
    'imagePath': a COCO export, a results list, a settings file), which a folder may hold.
    """
    data = read_json(json_path, dict if not in_folder else object)
    if in_folder and not (isinstance(data, dict) and ("shapes" in data or "imagePath" in data)):
        return None
    if not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{json_path}: not a labelme file (expected a 'shapes' list)")
    image_path = _find_image(json_path, data)
    width, height = data.get("imageWidth"), data.get("imageHeight")
    if width is None and height is None:
        width, height = image_size(image_path)
    elif not (is_int(width) and is_int(height) and width > 0 and height > 0):
        raise DatasetError(f"{json_path}: imageWidth and imageHeight must be positive integers, got {width!r}, {height!r}")
    else:
        check_image_size(image_path, width, height)
    record = ImageRecord(path=image_path, width=width, height=height)

    groups: dict = {}  # (label, group key) -> [label, mask, first shape]
    for k, shape in enumerate(data["shapes"]):
        with collected(errors, json_path):
            if not isinstance(shape, dict):
                raise DatasetError(f"{json_path}: shape {k} must be an object")
            label = shape.get("label")
            where = f"{json_path}: shape {k} (label {label!r})"
            if not isinstance(label, str) or not label:
                raise DatasetError(f"{where}: 'label' must be a non-empty string")
            kind = shape.get("shape_type") or "polygon"
            if kind in _LINE_SHAPES:
                continue
            if kind not in _AREA_SHAPES:
                raise DatasetError(f"{where}: unknown shape_type {kind!r} (expected one of {sorted(_AREA_SHAPES | _LINE_SHAPES)})")
            group_id = shape.get("group_id")
            if group_id is not None and not is_int(group_id):
                raise DatasetError(f"{where}: group_id must be an integer or null, got {group_id!r}")
            score = shape.get("score")
            if score is not None and not is_number(score):
                raise DatasetError(f"{where}: score must be a finite number, got {score!r}")
            mask = _shape_mask(shape, where, width, height)
            key = (label, ("group", group_id) if group_id is not None else ("shape", k))
            if key in groups:
                groups[key][1] |= mask
            else:
                groups[key] = [label, mask, shape]

    instances = []
    for label, mask, shape in groups.values():
        attributes = {k: v for k, v in shape.items() if k not in _SHAPE_KEYS}
        if shape.get("group_id") is not None:
            attributes["group_id"] = shape["group_id"]
        if shape.get("flags"):
            attributes["flags"] = shape["flags"]
        if shape.get("description"):
            attributes["description"] = shape["description"]
        score = shape.get("score")
        instances.append((label, Instance(
            category_id=0, rle=encode_rle(mask), score=None if score is None else float(score),
            iscrowd=label == IGNORE_LABEL or bool(shape.get("iscrowd")), attributes=attributes)))
    return record, instances


def read_labelme(path: str | Path, errors: Errors = None, progress=None) -> Dataset:
    """Read a folder of labelme JSON files (searched recursively) with their images, or one JSON file.

    Images in the folder without a JSON file are included without instances; JSON files of the
    folder that are not labelme files (no 'shapes' nor 'imagePath') are skipped. errors: None raises
    the first DatasetError; a list collects ``(path, message)`` per bad file or shape and leaves it
    out (a bad file's image too, when it lies beside it with the same stem, so that saving the
    dataset cannot replace that file by an empty one). progress: called as progress(done, total)
    after each image (a JSON file, or an image without a JSON beside it).
    """
    root = Path(path)
    if root.is_file():
        json_files, image_files = [root], []
    elif root.is_dir():
        json_files = sorted(root.rglob("*.json"))
        image_files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    else:
        raise DatasetError(f"{root}: labelme folder or file not found")

    records: dict[Path, ImageRecord] = {}
    labelled: list[tuple[ImageRecord, list[tuple[str, Instance]]]] = []
    beside = {p.with_suffix("") for p in json_files}  # an image beside its JSON counts with the JSON
    total = len(json_files) + sum(p.with_suffix("") not in beside for p in image_files)
    done = 0
    failed = set()  # JSON files left out: their images are left out too, so a save cannot blank them
    for json_path in json_files:
        failed.add(json_path)
        with collected(errors, json_path):
            read = _read_labelme_file(json_path, errors, in_folder=root.is_dir())
            failed.discard(json_path)
            if read is not None:
                record, instances = read
                key = record.path.resolve()
                if key in records:
                    raise DatasetError(f"{json_path}: its image {record.path} is already annotated by another JSON file")
                records[key] = record
                labelled.append((record, instances))
        done += 1
        if progress:
            progress(done, total)
    for image in image_files:
        if image.resolve() not in records and image.with_suffix(".json") not in failed:
            with collected(errors, image):
                width, height = image_size(image)
                records[image.resolve()] = ImageRecord(path=image, width=width, height=height)
        if image.with_suffix("") not in beside:
            done += 1
            if progress:
                progress(done, total)

    names = sorted({label for _, instances in labelled for label, _ in instances})
    categories = {k + 1: name for k, name in enumerate(names)}
    ids = {name: cid for cid, name in categories.items()}
    for record, instances in labelled:
        for label, inst in instances:
            inst.category_id = ids[label]
            record.instances.append(inst)
    ordered = sorted(records.values(), key=lambda r: r.path.as_posix())
    for index, record in enumerate(ordered):
        record.image_id = index
    return Dataset(images=ordered, categories=categories)


def _has_hole(mask: np.ndarray) -> bool:
    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


def _mask_shape(mask: np.ndarray) -> tuple[list, str]:
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    ok, png = cv2.imencode(".png", mask[y0:y1 + 1, x0:x1 + 1].astype(np.uint8))
    return [[float(x0), float(y0)], [float(x1), float(y1)]], base64.b64encode(png.tobytes()).decode("ascii")


def labelme_shapes(record: ImageRecord, categories: dict[int, str]) -> list[dict]:
    """The labelme shapes for one image's instances (see the module docstring)."""
    used = {inst.attributes.get("group_id") for inst in record.instances}
    next_group = max((g for g in used if is_int(g)), default=-1) + 1
    shapes = []
    for j, inst in enumerate(record.instances):
        where = f"{record.path}: instance {j}"
        if inst.category_id not in categories:
            raise DatasetError(f"{where}: category id {inst.category_id} is not in the dataset's categories")
        if inst.size != (record.height, record.width):
            raise DatasetError(f"{where}: mask is {inst.size[1]}x{inst.size[0]}, the image is {record.width}x{record.height}")
        mask = inst.mask
        if not mask.any():
            raise DatasetError(f"{where} ({categories[inst.category_id]}): empty mask; labelme has no empty shape")
        label = categories[inst.category_id]
        extra = {k: v for k, v in inst.attributes.items() if k not in ("group_id", "flags", "description")}
        if inst.score is not None:
            extra["score"] = inst.score
        if inst.iscrowd and label != IGNORE_LABEL:
            extra["iscrowd"] = 1
        base = {"label": label, "description": inst.attributes.get("description", ""),
                "flags": inst.attributes.get("flags", {})}
        group_id = inst.attributes.get("group_id")
        if _has_hole(mask):
            points, data = _mask_shape(mask)
            parts = [dict(base, points=points, shape_type="mask", mask=data)]
        else:
            parts = [dict(base, points=p.tolist(), shape_type="polygon", mask=None) for p in mask_to_pixel_polygons(mask)]
            if len(parts) > 1 and not is_int(group_id):
                group_id, next_group = next_group, next_group + 1
        for shape in parts:
            shape["group_id"] = group_id if is_int(group_id) else None
            shape.update(extra)
        shapes.extend(parts)
    return shapes


def write_labelme(dataset: Dataset, out_dir: str | Path, copy_images: bool = False, progress=None) -> list[Path]:
    """Write one labelme JSON per image into ``out_dir``, named after the image. Returns the JSON paths.

    copy_images: copy each image beside its JSON (imagePath is then the bare file name); else
    imagePath is the image's path relative to ``out_dir``. Every JSON is built (and every error
    raised) before any file is written; each file is written atomically.
    """
    out = Path(out_dir)
    plans = []
    names: dict[str, Path] = {}
    for record in dataset.images:
        json_name = record.path.stem + ".json"
        if json_name in names:
            raise DatasetError(f"{record.path}: two images named {record.path.stem}.* ({names[json_name]} too); "
                               "labelme keeps one JSON per image name in a folder")
        names[json_name] = record.path
        image_path = out / record.path.name if copy_images else record.path
        data = {
            "version": "5.5.0",
            "flags": {},
            "shapes": labelme_shapes(record, dataset.categories),
            "imagePath": Path(os.path.relpath(Path(image_path).absolute(), out.absolute())).as_posix(),
            "imageData": None,
            "imageHeight": record.height,
            "imageWidth": record.width,
        }
        plans.append((record, out / json_name, data))
    written = []
    for k, (record, json_path, data) in enumerate(plans):
        if copy_images and record.path.absolute() != (out / record.path.name).absolute():
            atomic_copy(record.path, out / record.path.name)
        written.append(atomic_write_json(json_path, data, indent=2))
        if progress:
            progress(k + 1, len(plans))
    return written
