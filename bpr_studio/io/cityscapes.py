"""Cityscapes files: gtFine ground truth and instance-level results, in and out, as cityscapesscripts reads them.

Layout (``ROOT`` is the folder given; ``SPLIT``/``CITY`` are folders, ``BASE`` an image's name):

- images: ``ROOT/leftImg8bit/SPLIT/CITY/BASE_leftImg8bit.<ext>``
- ground truth: ``ROOT/gtFine/SPLIT/CITY/BASE_gtFine_instanceIds.png`` (uint16; instance pixels
  ``labelId * 1000 + k``, crowd ("group") pixels ``labelId``, background 0),
  ``BASE_gtFine_labelIds.png`` (uint8) and ``BASE_gtFine_polygons.json``
  (``{imgHeight, imgWidth, objects: [{label, polygon: [[x, y], ...]}]}``, drawn in order, later
  objects on top, as ``json2instanceImg`` does)
- results: ``ROOT/results/SPLIT/CITY/BASE_pred.txt`` with lines ``masks/BASE_<k>.png labelId
  score``; masks are 8-bit PNGs, non-zero = the instance. ``evalInstanceLevelSemanticLabeling``
  finds them with ``CITYSCAPES_DATASET=ROOT`` when BASE follows Cityscapes' ``city_seq_frame``.

Category ids are Cityscapes label ids; only labels with instances (person, rider, car, truck,
bus, caravan, trailer, train, motorcycle, bicycle) hold instances.
"""

from __future__ import annotations

import re
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from ..core.rle import encode_rle
from .atomic import atomic_copy, atomic_write_bytes, atomic_write_json, atomic_write_text
from .dataset import Dataset, ImageRecord, Instance
from .errors import DatasetError, collected
from .images import IMAGE_SUFFIXES, image_size
from .jsonfile import read_json
from .masks import check_points, mask_to_pixel_polygons

Errors = list[tuple[Path, str]] | None

Label = namedtuple("Label", "name id has_instances ignore_in_eval")
# cityscapesscripts.helpers.labels: name, id, hasInstances, ignoreInEval (a test checks they agree)
LABELS = [
    Label("unlabeled", 0, False, True), Label("ego vehicle", 1, False, True),
    Label("rectification border", 2, False, True), Label("out of roi", 3, False, True),
    Label("static", 4, False, True), Label("dynamic", 5, False, True), Label("ground", 6, False, True),
    Label("road", 7, False, False), Label("sidewalk", 8, False, False), Label("parking", 9, False, True),
    Label("rail track", 10, False, True), Label("building", 11, False, False), Label("wall", 12, False, False),
    Label("fence", 13, False, False), Label("guard rail", 14, False, True), Label("bridge", 15, False, True),
    Label("tunnel", 16, False, True), Label("pole", 17, False, False), Label("polegroup", 18, False, True),
    Label("traffic light", 19, False, False), Label("traffic sign", 20, False, False),
    Label("vegetation", 21, False, False), Label("terrain", 22, False, False), Label("sky", 23, False, False),
    Label("person", 24, True, False), Label("rider", 25, True, False), Label("car", 26, True, False),
    Label("truck", 27, True, False), Label("bus", 28, True, False), Label("caravan", 29, True, True),
    Label("trailer", 30, True, True), Label("train", 31, True, False), Label("motorcycle", 32, True, False),
    Label("bicycle", 33, True, False), Label("license plate", -1, False, True),
]
NAME_TO_LABEL = {label.name: label for label in LABELS}
ID_TO_LABEL = {label.id: label for label in LABELS}
INSTANCE_CATEGORIES = {label.id: label.name for label in LABELS if label.has_instances}
"""{label id: name} of the Cityscapes classes with instances: the categories of a Cityscapes Dataset."""

ALIASES = {"motorbike": "motorcycle", "bike": "bicycle", "pedestrian": "person", "people": "person"}
"""Category names of other datasets (VOC, COCO, ...) taken as a Cityscapes label without a mapping."""

_IMAGE_TAG = "_leftImg8bit"


def _base_name(path: Path) -> str:
    """The Cityscapes base name of an image: its stem without ``_leftImg8bit``."""
    stem = path.stem
    return stem[: -len(_IMAGE_TAG)] if stem.endswith(_IMAGE_TAG) else stem


def _instances_from_ids(ids: np.ndarray) -> list[Instance]:
    """(H, W) int instanceIds -> instances of the classes with instances, sorted by id."""
    instances = []
    for value in np.unique(ids):
        value = int(value)
        label = ID_TO_LABEL.get(value // 1000 if value >= 1000 else value)
        if value == 0 or label is None or not label.has_instances:
            continue
        instances.append(Instance(category_id=label.id, rle=encode_rle(ids == value),
                                  iscrowd=value < 1000, source_id=value))
    return instances


def _ids_from_polygons(json_path: Path, width: int, height: int) -> np.ndarray:
    """Rasterise a gtFine polygons file as cityscapesscripts' json2instanceImg does. Returns (H, W) int32."""
    data = read_json(json_path, dict)
    if (data.get("imgWidth"), data.get("imgHeight")) != (width, height):
        raise DatasetError(f"{json_path}: imgWidth x imgHeight is {data.get('imgWidth')!r} x {data.get('imgHeight')!r}, "
                           f"the image is {width}x{height}")
    objects = data.get("objects")
    if not isinstance(objects, list):
        raise DatasetError(f"{json_path}: expected an 'objects' list")
    image = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(image)
    counts: dict[str, int] = {}
    for k, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise DatasetError(f"{json_path}: object {k} must be an object with 'label' and 'polygon'")
        name = obj.get("label")
        where = f"{json_path}: object {k} (label {name!r})"
        if obj.get("deleted"):
            continue
        group = isinstance(name, str) and name not in NAME_TO_LABEL and name.endswith("group")
        label = NAME_TO_LABEL.get(name[: -len("group")] if group else name) if isinstance(name, str) else None
        if label is None:
            raise DatasetError(f"{where}: not a Cityscapes label (see cityscapesscripts' labels.py)")
        points = check_points(obj.get("polygon"), where, width, height)
        value = label.id
        if label.has_instances and not group:
            value = label.id * 1000 + counts.get(label.name, 0)
            counts[label.name] = counts.get(label.name, 0) + 1
        if value >= 0:
            draw.polygon([(float(x), float(y)) for x, y in points], fill=value)
    return np.asarray(image, dtype=np.int32)


def _read_ground_truth(image: Path, gt_dir: Path, record: ImageRecord) -> list[Instance]:
    base = _base_name(image)
    ids_path = gt_dir / f"{base}_gtFine_instanceIds.png"
    poly_path = gt_dir / f"{base}_gtFine_polygons.json"
    if ids_path.is_file():
        ids = cv2.imread(str(ids_path), cv2.IMREAD_UNCHANGED)
        if ids is None or ids.ndim != 2:
            raise DatasetError(f"{ids_path}: not a readable single-channel instanceIds PNG")
        if ids.shape != (record.height, record.width):
            raise DatasetError(f"{ids_path}: is {ids.shape[1]}x{ids.shape[0]} pixels, the image is {record.width}x{record.height}")
        return _instances_from_ids(ids.astype(np.int32))
    if poly_path.is_file():
        return _instances_from_ids(_ids_from_polygons(poly_path, record.width, record.height))
    return []


def read_cityscapes(root: str | Path, split: str | None = None, errors: Errors = None, progress=None) -> Dataset:
    """Read a Cityscapes folder: images from ``leftImg8bit/`` with their ``gtFine/`` instances.

    Instances come from ``*_gtFine_instanceIds.png`` (exact), else from ``*_gtFine_polygons.json``
    rasterised as cityscapesscripts does; an image with neither has no instances. Crowd regions
    (``cargroup``, pixel value = labelId) become crowd instances; classes without instances are
    not read. split: read only ``leftImg8bit/<split>/``. A ``root`` without ``leftImg8bit/`` is
    searched for ``*_leftImg8bit.*`` images with their ground truth beside them. A ground-truth
    file whose image is missing is a DatasetError. source_id is the pixel value in instanceIds.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: Cityscapes folder not found")
    image_root = root / "leftImg8bit" if (root / "leftImg8bit").is_dir() else root
    gt_root = root / "gtFine" if image_root != root else root
    search = image_root / split if split else image_root
    images = sorted((p for p in search.rglob(f"*{_IMAGE_TAG}.*") if p.suffix.lower() in IMAGE_SUFFIXES),
                    key=lambda p: p.relative_to(image_root).as_posix())
    gt_search = (gt_root / split if split and gt_root != root else gt_root)
    gt_files = set()
    if gt_search.is_dir():
        gt_files = set(gt_search.rglob("*_gtFine_instanceIds.png")) | set(gt_search.rglob("*_gtFine_polygons.json"))
    dataset = Dataset(categories=dict(INSTANCE_CATEGORIES))
    for index, image in enumerate(images):
        gt_dir = gt_root / image.parent.relative_to(image_root)
        base = _base_name(image)
        gt_files -= {gt_dir / f"{base}_gtFine_instanceIds.png", gt_dir / f"{base}_gtFine_polygons.json"}
        with collected(errors, image):
            width, height = image_size(image)
            record = ImageRecord(path=image, width=width, height=height, image_id=index)
            record.instances = _read_ground_truth(image, gt_dir, record)
            dataset.images.append(record)
        if progress:
            progress(index + 1, len(images))
    for orphan in sorted(gt_files):
        with collected(errors, orphan):
            raise DatasetError(f"{orphan}: its image was not found (expected {image_root}/.../"
                               f"{orphan.name.split('_gtFine_')[0]}{_IMAGE_TAG}.png)")
    if not images and not gt_files:
        raise DatasetError(f"{search}: no Cityscapes images (*{_IMAGE_TAG}.png) found")
    return dataset


def read_cityscapes_results(results_dir: str | Path, images: Dataset, errors: Errors = None) -> Dataset:
    """Read Cityscapes instance results (``*.txt`` of ``mask.png labelId score`` lines) for ``images``.

    A txt file belongs to the image whose base name (stem without ``_leftImg8bit``) starts its
    name, followed by ``_`` or ``.`` (the longest such base wins). A txt file that belongs to no
    image, a second txt for one image, a bad line, a missing mask, a mask of another size or a
    label id without instances is a DatasetError naming the file and line. Returns a Dataset with
    the same images (new records) whose instances are the predictions, with scores.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DatasetError(f"{results_dir}: results folder not found")
    records = [ImageRecord(path=r.path, width=r.width, height=r.height, image_id=r.image_id) for r in images.images]
    by_base = {_base_name(r.path): r for r in records}
    owner: dict[int, Path] = {}
    for txt in sorted(results_dir.rglob("*.txt")):
        with collected(errors, txt):
            candidates = [b for b in by_base if txt.stem == b or txt.name.startswith(b + "_") or txt.name.startswith(b + ".")]
            if not candidates:
                raise DatasetError(f"{txt}: results file for no known image (its name must start with an image's base name)")
            record = by_base[max(candidates, key=len)]
            if id(record) in owner:
                raise DatasetError(f"{txt}: a second results file for {record.path.name} (first: {owner[id(record)]})")
            owner[id(record)] = txt
            record.instances = _read_results_txt(txt, record, errors)
    return Dataset(images=records, categories=dict(INSTANCE_CATEGORIES))


def _read_results_txt(txt: Path, record: ImageRecord, errors: Errors) -> list[Instance]:
    try:
        lines = txt.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{txt}: not readable as text ({exc})") from None
    instances = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{txt}: line {number}"
        with collected(errors, txt):
            parts = line.split()
            if len(parts) != 3:
                raise DatasetError(f"{where}: expected 'mask.png labelId score', got {line!r}")
            try:
                label_id, score = float(parts[1]), float(parts[2])
            except ValueError:
                label_id = score = float("nan")
            if not (np.isfinite(score) and np.isfinite(label_id) and label_id.is_integer()):
                raise DatasetError(f"{where}: labelId must be an integer and score a finite number, "
                                   f"got {parts[1]!r} {parts[2]!r}")
            label_id = int(label_id)
            label = ID_TO_LABEL.get(label_id)
            if label is None or not label.has_instances:
                raise DatasetError(f"{where}: label id {label_id} is not a Cityscapes class with instances "
                                   f"({', '.join(f'{i} {n}' for i, n in INSTANCE_CATEGORIES.items())})")
            mask_path = txt.parent / parts[0]
            if not mask_path.is_file():
                raise DatasetError(f"{where}: mask {mask_path} not found")
            try:
                with Image.open(mask_path) as im:
                    mask = np.asarray(im.convert("L")) != 0
            except (OSError, ValueError, SyntaxError) as exc:
                raise DatasetError(f"{where}: mask {mask_path} is not a readable image ({exc})") from None
            if mask.shape != (record.height, record.width):
                raise DatasetError(f"{where}: mask {mask_path.name} is {mask.shape[1]}x{mask.shape[0]}, "
                                   f"the image {record.path.name} is {record.width}x{record.height}")
            instances.append(Instance(category_id=label_id, rle=encode_rle(mask), score=score, source_id=parts[0]))
    return instances


def cityscapes_labels(dataset: Dataset, category_map: dict | None = None) -> dict[int, Label | None]:
    """{category id: Cityscapes Label, or None to leave its instances out} for every category in use.

    category_map: {category id or name: Cityscapes label name, or None / "-" to leave out on
    purpose}. Without an entry a category whose name is a Cityscapes class with instances (or an
    ``ALIASES`` name) maps to it. Raises DatasetError listing every used category that maps to no
    class with instances, or every key of ``category_map`` that names no category of the dataset
    (a typo would otherwise be ignored without a word).
    """
    category_map = dict(category_map or {})
    used = sorted({inst.category_id for r in dataset.images for inst in r.instances})
    known = {key for cid in [*dataset.categories, *used] for key in (cid, str(cid))} | set(dataset.categories.values())
    unknown = [key for key in category_map if key not in known]
    if unknown:
        raise DatasetError(
            "category map: " + ", ".join(repr(str(key)) for key in unknown)
            + (" matches" if len(unknown) == 1 else " match")
            + " no category name or id of the dataset (its categories: "
            + ", ".join(f"{name} ({cid})" for cid, name in sorted(dataset.categories.items())) + ")")
    mapping, problems = {}, []
    for cid in used:
        name = dataset.categories.get(cid, str(cid))
        for key in (cid, str(cid), name):
            if key in category_map:
                target = category_map[key]
                break
        else:
            target = ALIASES.get(name, name)
        if target in (None, "-", ""):
            mapping[cid] = None
            continue
        label = NAME_TO_LABEL.get(target)
        if label is None or not label.has_instances:
            problems.append(f"{name!r} (id {cid})" + (f" -> {target!r}" if target != name else ""))
        else:
            mapping[cid] = label
    if problems:
        raise DatasetError(
            "categories without a Cityscapes class with instances: " + ", ".join(problems)
            + "; map them with a category map NAME=LABEL (LABEL one of "
            + ", ".join(INSTANCE_CATEGORIES.values()) + ", or '-' to leave them out)")
    return mapping


def _place(record: ImageRecord, split: str, city: str) -> tuple[str, str, str]:
    """(split, city, base) for an image: kept when it already lies in leftImg8bit/SPLIT/CITY/."""
    parts = record.path.parts
    if len(parts) >= 4 and parts[-4] == "leftImg8bit":
        split, city = parts[-3], parts[-2]
    base = _base_name(record.path)
    if re.search(r"\s", base):
        raise DatasetError(f"{record.path}: Cityscapes results are space-separated, the name must not contain spaces")
    return split, city, base


OVERLAP_RULES = ("later", "smaller")
"""Who keeps a pixel that several ground-truth instances cover: the later one in the dataset's
order (Cityscapes' own drawing order), or the smaller one (an object in front of a larger one)."""


@dataclass(frozen=True)
class OverlapLoss:
    """A ground-truth instance that lost pixels to other instances in an instanceIds image.

    image: the image's path; instance: its index in the image's instances; label: the
    Cityscapes label name; lost: pixels given to other instances; area: its mask's pixels.
    """

    image: Path
    instance: int
    label: str
    lost: int
    area: int


def _ground_truth_pngs(record: ImageRecord, gt: list[tuple[int, Instance]], mapping: dict, polygons: bool = True,
                       overlap: str = "later") -> tuple[np.ndarray, np.ndarray, list, list[OverlapLoss]]:
    """Composite ground truth, each instance over the ones before it, working inside each instance's box.

    overlap: one of OVERLAP_RULES; "smaller" draws the instances from the largest to the smallest
    (ties in the dataset's order), and instance numbers in instanceIds follow the drawing order.
    Returns instanceIds (H, W) uint16, labelIds (H, W) uint8, the polygons file's objects (an
    empty list when ``polygons`` is False, for a check without the polygon tracing) and the
    instances that lost pixels to others.
    """
    if overlap not in OVERLAP_RULES:
        raise DatasetError(f"overlap must be one of {', '.join(OVERLAP_RULES)}, got {overlap!r}")
    if overlap == "smaller":
        gt = sorted(gt, key=lambda item: -item[1].area)
    ids = np.zeros((record.height, record.width), np.uint16)
    placed = []
    counts: dict[int, int] = {}
    for j, inst in gt:
        label = mapping[inst.category_id]
        if inst.iscrowd:
            value = label.id
        else:
            value = label.id * 1000 + counts.get(label.id, 0)
            counts[label.id] = counts.get(label.id, 0) + 1
            if counts[label.id] > 1000:
                raise DatasetError(f"{record.path}: more than 1000 {label.name} instances; instanceIds holds at most 1000")
        x, y, w, h = (int(v) for v in inst.bbox)
        box = (slice(y, y + h), slice(x, x + w))
        crop = inst.mask[box]
        ids[box][crop] = value
        placed.append((j, inst, label, value, box, crop))
    objects, losses = [], []
    for j, inst, label, value, (rows, cols), crop in placed:
        visible = (ids[rows, cols] == value) & crop
        if not visible.any():
            problem = "has an empty mask" if inst.area == 0 else \
                f"is completely covered by {'later' if overlap == 'later' else 'smaller'} instances"
            raise DatasetError(f"{record.path}: instance {j} ({label.name}) {problem}; "
                               "Cityscapes' instanceIds cannot hold it")
        lost = inst.area - int(visible.sum())
        if lost:
            losses.append(OverlapLoss(record.path, j, label.name, lost, inst.area))
        if polygons:
            polygon = mask_to_pixel_polygons(visible, join_parts=True)[0] + (cols.start, rows.start)
            objects.append({"label": label.name + ("group" if inst.iscrowd else ""),
                            "polygon": [[int(px), int(py)] for px, py in polygon]})
    label_ids = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8)
    return ids, label_ids, objects, sorted(losses, key=lambda loss: loss.instance)


def _png(array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", array)
    return data.tobytes()


def write_cityscapes(dataset: Dataset, out: str | Path, category_map: dict | None = None, split: str = "val",
                     city: str = "default", copy_images: bool = True, overlap: str = "later",
                     overlaps: list[OverlapLoss] | None = None, progress=None) -> list[Path]:
    """Write ``dataset`` in the Cityscapes layout under ``out`` (see the module docstring). Returns the files.

    Instances without a score are ground truth (gtFine polygons, instanceIds, labelIds; written
    for every image when any instance is ground truth or none is a prediction); instances with a
    score are results (txt + mask PNGs). Overlapping ground truth: instanceIds holds one instance
    per pixel, so the shared pixels go to one instance, as ``overlap`` says ("later": the later
    instance in the dataset's order, Cityscapes' drawing order; "smaller": the smaller one); an
    instance left with no pixel is a DatasetError. overlaps: a list that gets an OverlapLoss for
    every instance that lost pixels (the caller reports them). category_map: see
    ``cityscapes_labels``. split, city: folders for images that do not already lie in
    ``leftImg8bit/SPLIT/CITY/``. copy_images: copy the images to ``leftImg8bit/``.
    Everything is checked before the first file is written; every file is written atomically.
    """
    out = Path(out)
    mapping = cityscapes_labels(dataset, category_map)
    instances = [inst for r in dataset.images for inst in r.instances if mapping[inst.category_id] is not None]
    write_gt = any(inst.score is None for inst in instances) or not instances
    places, seen = [], {}
    for record in dataset.images:
        place = _place(record, split, city)
        if place in seen:
            raise DatasetError(f"{record.path}: same Cityscapes name {place[2]} as {seen[place]}")
        seen[place] = record.path
        places.append(place)

    def image_plan(record):
        kept = [(j, inst) for j, inst in enumerate(record.instances) if mapping[inst.category_id] is not None]
        gt = [(j, inst) for j, inst in kept if inst.score is None]
        preds = [(j, inst) for j, inst in kept if inst.score is not None]
        for j, inst in kept:
            if inst.size != (record.height, record.width):
                raise DatasetError(f"{record.path}: instance {j} mask is {inst.size[1]}x{inst.size[0]}, "
                                   f"the image is {record.width}x{record.height}")
        return gt, preds

    losses = []
    for record in dataset.images:  # check everything before writing anything
        gt, _ = image_plan(record)
        if write_gt:
            losses += _ground_truth_pngs(record, gt, mapping, polygons=False, overlap=overlap)[3]
    if overlaps is not None:
        overlaps.extend(losses)

    written = []
    for k, (record, (sp, ct, base)) in enumerate(zip(dataset.images, places)):
        gt, preds = image_plan(record)
        if copy_images:
            target = out / "leftImg8bit" / sp / ct / f"{base}{_IMAGE_TAG}{record.path.suffix.lower()}"
            if record.path.absolute() != target.absolute():
                written.append(atomic_copy(record.path, target))
        if write_gt:
            ids, label_ids, objects, _ = _ground_truth_pngs(record, gt, mapping, overlap=overlap)
            gt_dir = out / "gtFine" / sp / ct
            written.append(atomic_write_bytes(gt_dir / f"{base}_gtFine_instanceIds.png", _png(ids)))
            written.append(atomic_write_bytes(gt_dir / f"{base}_gtFine_labelIds.png", _png(label_ids)))
            written.append(atomic_write_json(gt_dir / f"{base}_gtFine_polygons.json",
                                             {"imgHeight": record.height, "imgWidth": record.width, "objects": objects}, indent=2))
        if preds:
            res_dir = out / "results" / sp / ct
            lines = []
            for n, (j, inst) in enumerate(preds):
                name = f"masks/{base}_{n:03d}.png"
                written.append(atomic_write_bytes(res_dir / name, _png(inst.mask.astype(np.uint8) * 255)))
                lines.append(f"{name} {mapping[inst.category_id].id} {float(inst.score)!r}\n")
            written.append(atomic_write_text(res_dir / f"{base}_pred.txt", "".join(lines)))
        if progress:
            progress(k + 1, len(dataset.images))
    return written
