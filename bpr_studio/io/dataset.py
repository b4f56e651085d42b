"""The in-memory dataset: images with their instances, whatever file format they came from.

Masks are held as COCO RLE (pycocotools' compressed dict) so a city-sized dataset fits in memory;
``Instance.mask`` decodes on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import rle as coco_rle


@dataclass
class Instance:
    """One object: its category and mask, plus what a file said about it.

    rle: compressed COCO RLE of the (H, W) mask. score: confidence when it is a prediction, else
    None. source_id: the id it had in the file it came from (kept on export when possible).
    attributes: anything else worth carrying through a round trip (e.g. a labelme label string).
    """

    category_id: int
    rle: dict
    score: float | None = None
    iscrowd: bool = False
    source_id: Any = None
    attributes: dict = field(default_factory=dict)

    @classmethod
    def from_mask(cls, mask: np.ndarray, category_id: int, **kwargs) -> "Instance":
        """mask: (H, W) bool."""
        return cls(category_id=category_id, rle=coco_rle.encode_rle(mask), **kwargs)

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, decoded from the RLE."""
        return coco_rle.decode_rle(self.rle)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the mask."""
        h, w = self.rle["size"]
        return int(h), int(w)

    @property
    def area(self) -> int:
        """Foreground pixels."""
        return coco_rle.area(self.rle)

    @property
    def bbox(self) -> list[float]:
        """COCO box [x, y, w, h] in pixels."""
        return coco_rle.bbox(self.rle)


@dataclass
class ImageRecord:
    """One image file and its instances. width, height in pixels; image_id as in the source file."""

    path: Path
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)
    image_id: Any = None

    def masks(self) -> np.ndarray:
        """(N, H, W) bool stack of the instance masks."""
        if not self.instances:
            return np.zeros((0, self.height, self.width), bool)
        return np.stack([inst.mask for inst in self.instances])


@dataclass
class Dataset:
    """Images plus the category table {category_id: name}."""

    images: list[ImageRecord] = field(default_factory=list)
    categories: dict[int, str] = field(default_factory=dict)
