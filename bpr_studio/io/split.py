"""Splitting a COCO annotation file by image into a training and a validation part."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import DatasetError
from .jsonfile import read_json


def is_validation_image(file_name: str, fraction: float, salt: str = "") -> bool:
    """Whether an image goes to the validation part: the MD5 of ``salt + file_name`` maps it to [0, 1),
    below ``fraction`` means validation. Depends on the name only, so the split survives added or
    removed images and any order of the file."""
    digest = hashlib.md5((salt + file_name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def split_coco(annotations: str | Path, fraction: float = 0.2, salt: str = "") -> tuple[dict, dict]:
    """(training, validation) COCO documents of ``annotations``, split by image (every annotation goes
    with its image; categories and other top-level keys are copied to both)."""
    path = Path(annotations)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    doc = read_json(path)
    images = doc.get("images")
    if not isinstance(images, list) or not all(isinstance(im, dict) and "file_name" in im and "id" in im
                                               for im in images):
        raise DatasetError(f"{path}: expected 'images': a list of objects with 'id' and 'file_name'")
    val_ids = {im["id"] for im in images if is_validation_image(str(im["file_name"]), fraction, salt)}
    parts = []
    for keep in (lambda i: i not in val_ids, lambda i: i in val_ids):
        part = {k: v for k, v in doc.items() if k not in ("images", "annotations")}
        part["images"] = [im for im in images if keep(im["id"])]
        part["annotations"] = [a for a in doc.get("annotations", []) if keep(a.get("image_id"))]
        parts.append(part)
    return parts[0], parts[1]
