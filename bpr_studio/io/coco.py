"""COCO files: ground-truth annotation files and results files, in and out.

Masks are read as pycocotools reads them (polygons rasterised by ``frPyObjects`` and merged,
uncompressed and compressed RLE) and written as compressed RLE by default, or as polygons on
request. Image files are checked when a file is read: each must exist and its header must give
the width and height the file states (only the header is read, not the pixels).

Image ids of a results file are matched to images by these rules, first match wins:
1. the entry carries ``"file_name"``: the image whose path ends with that name
   (``write_coco_results`` writes it); when no image has that name (its file was deleted or is
   unreadable) the entry is an error naming it: its ``image_id`` is never used instead, because
   for a plain folder that id is a position which now points at another photo;
2. an entry without ``file_name``: its ``image_id`` equals an image's ``image_id`` (from the
   annotations file; for a plain folder of images ``images_from_folder`` sets ids as in its
   docstring).
A result whose image cannot be found is a DatasetError naming the entry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .atomic import atomic_write_json
from .dataset import Dataset, ImageRecord, Instance
from .errors import DatasetError, collected
from .images import IMAGE_SUFFIXES, check_image_size, image_size
from .jsonfile import is_int, is_number, read_json
from .masks import checked_rle, coco_polygons_to_rle, mask_to_coco_polygons

Errors = list[tuple[Path, str]] | None
Progress = Callable[[int, int], None] | None

# annotation keys this module reads or writes; any other key is carried in Instance.attributes
_ANNOTATION_KEYS = {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", "score", "file_name"}


def _instance_from_annotation(ann: dict, where: str, record: ImageRecord, categories: dict[int, str]) -> Instance:
    """One COCO annotation or result entry -> Instance. ``where`` names the file and entry for errors."""
    category_id = ann.get("category_id")
    if not is_int(category_id):
        raise DatasetError(f"{where}: category_id must be an integer, got {category_id!r}")
    if category_id not in categories:
        raise DatasetError(f"{where}: unknown category id {category_id} (the categories are {sorted(categories)})")
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        rle = checked_rle(seg, where, record.width, record.height)
    elif isinstance(seg, list):
        rle = coco_polygons_to_rle(seg, where, record.width, record.height)
    else:
        raise DatasetError(f"{where}: segmentation must be a list of polygons or an RLE dict, got {type(seg).__name__}")
    score = ann.get("score")
    if score is not None and not is_number(score):
        raise DatasetError(f"{where}: score must be a finite number, got {score!r}")
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1, True, False):
        raise DatasetError(f"{where}: iscrowd must be 0 or 1, got {iscrowd!r}")
    return Instance(
        category_id=category_id,
        rle=rle,
        score=None if score is None else float(score),
        iscrowd=bool(iscrowd),
        source_id=ann.get("id"),
        attributes={k: v for k, v in ann.items() if k not in _ANNOTATION_KEYS},
    )


def _read_categories(data: dict, path: Path) -> dict[int, str]:
    categories = {}
    entries = data.get("categories", [])
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: 'categories' must be a list")
    for k, cat in enumerate(entries):
        if not (isinstance(cat, dict) and is_int(cat.get("id")) and isinstance(cat.get("name"), str)):
            raise DatasetError(f"{path}: category {k} must be an object with an integer 'id' and a string 'name'")
        if cat["id"] in categories:
            raise DatasetError(f"{path}: category id {cat['id']} appears twice")
        categories[cat["id"]] = cat["name"]
    return categories


def _record_from_image(entry, index: int, path: Path, images_dir: Path, check_image: bool = True) -> ImageRecord:
    where = f"{path}: image {index}"
    if not isinstance(entry, dict):
        raise DatasetError(f"{where}: must be an object with id, file_name, width, height")
    image_id, name = entry.get("id"), entry.get("file_name")
    width, height = entry.get("width"), entry.get("height")
    if not (is_int(image_id) or isinstance(image_id, str)):
        raise DatasetError(f"{where}: 'id' must be an integer, got {image_id!r}")
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{where} (id {image_id}): 'file_name' must be a non-empty string")
    if not (is_int(width) and is_int(height) and width > 0 and height > 0):
        raise DatasetError(f"{where} ({name}): 'width' and 'height' must be positive integers, got {width!r}, {height!r}")
    image_path = images_dir / name
    if check_image:
        check_image_size(image_path, width, height)
    return ImageRecord(path=image_path, width=width, height=height, image_id=image_id)


def read_coco(annotations: str | Path, images_dir: str | Path | None = None, errors: Errors = None,
              progress: Progress = None, check_images: bool = True) -> Dataset:
    """Read a COCO annotations file (ground truth, or any file with 'images' and 'annotations').

    images_dir: folder that ``file_name`` is relative to; None = the JSON file's folder (as
    labelme's converter writes it). errors: None raises the first DatasetError; a list collects
    ``(path, message)`` for each bad image or annotation and leaves that one out. progress:
    called as progress(done, total) after each image. Image ids, annotation ids (as
    ``Instance.source_id``) and extra annotation keys (``Instance.attributes``) are kept.
    check_images=False trusts the stated sizes without opening the image files (for a caller that
    reads every image anyway and reports a bad one then, as ``refine`` does).
    """
    path = Path(annotations)
    data = read_json(path, dict)
    images_dir = Path(images_dir) if images_dir is not None else path.parent
    if not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: expected a COCO file with an 'images' list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise DatasetError(f"{path}: 'annotations' must be a list")
    categories = _read_categories(data, path)

    ids = [e.get("id") for e in data["images"] if isinstance(e, dict)]
    seen = set()
    for image_id in ids:
        if isinstance(image_id, (int, str)):
            if image_id in seen:
                raise DatasetError(f"{path}: image id {image_id!r} appears twice")
            seen.add(image_id)

    by_image: dict = {}
    for k, ann in enumerate(anns):
        with collected(errors, path):
            if not isinstance(ann, dict):
                raise DatasetError(f"{path}: annotation {k} must be an object")
            image_id = ann.get("image_id")
            if not isinstance(image_id, (int, str)) or image_id not in seen:
                raise DatasetError(f"{path}: annotation id {ann.get('id')!r} refers to unknown image id {image_id!r}")
            by_image.setdefault(image_id, []).append(ann)

    dataset = Dataset(categories=categories)
    total = len(data["images"])
    for index, entry in enumerate(data["images"]):
        with collected(errors, path):
            record = _record_from_image(entry, index, path, images_dir, check_images)
            for ann in by_image.get(record.image_id, []):
                where = f"{path}: annotation id {ann.get('id')!r} (image {record.path.name})"
                with collected(errors, path):
                    record.instances.append(_instance_from_annotation(ann, where, record, categories))
            dataset.images.append(record)
        if progress:
            progress(index + 1, total)
    return dataset


def images_from_folder(images_dir: str | Path, errors: Errors = None, progress: Progress = None) -> Dataset:
    """A Dataset of the image files under ``images_dir`` (recursively), without instances.

    Images are sorted by their path relative to ``images_dir``. image_id: the file stem as an
    integer when every stem is a distinct integer (``000000397133.jpg`` -> 397133, as COCO names
    its images), else the position in that sorted order, from 0. Sizes come from file headers.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: images folder not found")
    files = sorted((p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.relative_to(root).as_posix())
    stems = [p.stem for p in files]
    numeric = all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems)
    dataset = Dataset()
    for index, file in enumerate(files):
        with collected(errors, file):
            width, height = image_size(file)
            dataset.images.append(ImageRecord(path=file, width=width, height=height,
                                              image_id=int(file.stem) if numeric else index))
        if progress:
            progress(index + 1, len(files))
    return dataset


def _find_record(entry: dict, by_id: dict, records: list[ImageRecord]) -> ImageRecord | None:
    name = entry.get("file_name")
    if name is not None and not (isinstance(name, str) and name):
        raise DatasetError(f"'file_name' must be a non-empty string, got {name!r}")
    if name is not None:
        suffix = "/" + name.replace("\\", "/").lstrip("./")
        matches = [r for r in records if ("/" + r.path.as_posix()).endswith(suffix)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise DatasetError(f"file_name {name!r} matches {len(matches)} images")
        raise DatasetError(f"file_name {name!r}: no such image among the {len(records)} images read "
                           "(missing or unreadable)")
    image_id = entry.get("image_id")
    if isinstance(image_id, (int, str)):
        return by_id.get(image_id)
    return None


def read_coco_results(results: str | Path, images: Dataset, errors: Errors = None,
                      entry_images: list | None = None) -> Dataset:
    """Read a COCO results file (a list of {image_id, category_id, segmentation, score}).

    images: the Dataset the results belong to (from ``read_coco`` or ``images_from_folder``).
    Returns a Dataset with the same images (new records) whose instances are the predictions,
    with scores. Entries are matched to images as the module docstring says; an entry whose image
    cannot be found, or whose RLE size disagrees with its image, is a DatasetError naming it.
    When ``images`` has categories, an unknown category id is an error; when it has none, the
    categories are the ids found, named by their number.
    entry_images: a list that receives, for each entry of the file in order, ``(image index in the
    returned Dataset or None when no image matched, message of the DatasetError that left the entry
    out or None)``; with ``errors`` a list, so a caller can keep the entries that were left out.
    """
    path = Path(results)
    entries = read_json(path, list)
    records = [ImageRecord(path=r.path, width=r.width, height=r.height, image_id=r.image_id) for r in images.images]
    by_id = {r.image_id: r for r in records}
    categories = dict(images.categories)
    open_categories = not categories
    index_of = {id(r): i for i, r in enumerate(records)}
    for k, entry in enumerate(entries):
        where = f"{path}: result {k}"
        record, n_errors = None, len(errors or ())
        with collected(errors, path):
            if not isinstance(entry, dict):
                raise DatasetError(f"{where}: must be an object with image_id, category_id, segmentation, score")
            try:
                record = _find_record(entry, by_id, records)
            except DatasetError as exc:
                raise DatasetError(f"{where}: {exc}") from None
            if record is None:
                raise DatasetError(f"{where}: no image found for image_id {entry.get('image_id')!r}")
            if not is_number(entry.get("score")):
                raise DatasetError(f"{where} (image {record.path.name}): 'score' must be a finite number, "
                                   f"got {entry.get('score')!r}")
            if open_categories and is_int(entry.get("category_id")):
                categories.setdefault(entry["category_id"], str(entry["category_id"]))
            record.instances.append(_instance_from_annotation(entry, f"{where} (image {record.path.name})", record, categories))
        if entry_images is not None:
            failed = errors is not None and len(errors) > n_errors
            entry_images.append((None if record is None else index_of[id(record)], errors[-1][1] if failed else None))
    return Dataset(images=records, categories=categories)


def coco_image_ids(dataset: Dataset) -> list[int]:
    """The COCO image id written for each image: its own id when all are distinct integers, else 0, 1, 2, ..."""
    ids = [r.image_id for r in dataset.images]
    if all(is_int(i) for i in ids) and len(set(ids)) == len(ids):
        return ids
    return list(range(len(ids)))


def _annotation_ids(dataset: Dataset) -> list[list[int]]:
    """Annotation ids per image: each instance keeps its integer source_id unless taken; others get new ids."""
    taken = set()
    kept = []
    for record in dataset.images:
        row = []
        for inst in record.instances:
            ok = is_int(inst.source_id) and inst.source_id > 0 and inst.source_id not in taken
            row.append(inst.source_id if ok else None)
            if ok:
                taken.add(inst.source_id)
        kept.append(row)
    next_id = max(taken, default=0) + 1
    for row in kept:
        for j, value in enumerate(row):
            if value is None:
                row[j] = next_id
                next_id += 1
    return kept


def _relative_name(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()


def _check_categories(dataset: Dataset) -> None:
    for record in dataset.images:
        for j, inst in enumerate(record.instances):
            if inst.category_id not in dataset.categories:
                raise DatasetError(f"{record.path}: instance {j} has category id {inst.category_id}, "
                                   f"which is not in the dataset's categories {sorted(dataset.categories)}")
            if inst.size != (record.height, record.width):
                raise DatasetError(f"{record.path}: instance {j} mask is {inst.size[1]}x{inst.size[0]}, "
                                   f"the image is {record.width}x{record.height}")


def write_coco(dataset: Dataset, path: str | Path, polygons: bool = False) -> Path:
    """Write ``dataset`` as a COCO annotations file at ``path`` (atomically). Returns the path.

    Masks are compressed RLE (lossless) by default. polygons=True writes polygons instead: one
    per connected part, vertices on pixel corners, each hole joined to its outer ring by a
    zero-width cut, so pycocotools still decodes exactly the mask; crowd instances and empty
    masks stay RLE. ``file_name`` is relative to the JSON file's folder; area and bbox come from
    the mask; image ids, annotation ids, scores and extra annotation keys are kept where possible.
    """
    path = Path(path)
    _check_categories(dataset)
    image_ids = coco_image_ids(dataset)
    ann_ids = _annotation_ids(dataset)
    images, annotations = [], []
    for record, image_id, row in zip(dataset.images, image_ids, ann_ids):
        images.append({"id": image_id, "file_name": _relative_name(record.path, path.parent),
                       "width": record.width, "height": record.height})
        for inst, ann_id in zip(record.instances, row):
            segmentation = inst.rle
            if polygons and not inst.iscrowd and inst.area > 0:
                segmentation = mask_to_coco_polygons(inst.mask)
            ann = dict(inst.attributes)
            ann.update(id=ann_id, image_id=image_id, category_id=inst.category_id, segmentation=segmentation,
                       area=float(inst.area), bbox=inst.bbox, iscrowd=int(inst.iscrowd))
            if inst.score is not None:
                ann["score"] = inst.score
            annotations.append(ann)
    data = {
        "info": {"description": "written by BPR Studio"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": ""} for cid, name in sorted(dataset.categories.items())],
    }
    return atomic_write_json(path, data)


def write_coco_results(dataset: Dataset, path: str | Path) -> Path:
    """Write every instance of ``dataset`` as a COCO results file (a JSON list), atomically.

    Each entry: image_id (as ``write_coco`` numbers images), category_id, segmentation
    (compressed RLE), bbox [x, y, w, h] computed from the mask, score (1.0 for an instance without one), and file_name: the image path
    relative to the folder that holds all images, so ``read_coco_results`` can match it without
    the annotations file.
    """
    path = Path(path)
    _check_categories(dataset)
    parents = [str(r.path.absolute().parent) for r in dataset.images]
    common = Path(os.path.commonpath(parents)) if parents else path.parent
    entries = []
    for record, image_id in zip(dataset.images, coco_image_ids(dataset)):
        name = _relative_name(record.path, common)
        for inst in record.instances:
            entries.append({"image_id": image_id, "file_name": name, "category_id": inst.category_id,
                            "segmentation": inst.rle, "bbox": inst.bbox,
                            "score": 1.0 if inst.score is None else inst.score})
    return atomic_write_json(path, entries)
