"""One image's work, the same in every engine: a task (no pixels), loading it, refining it, the result.

Tasks and results are plain data (JSON-able), so they travel to Ray actors and into shard files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.boundary import mask_bbox
from ..core.config import RefinerConfig
from ..core.refiner import Refiner
from ..core.rle import decode_rle, encode_rle
from ..io.errors import DatasetError
from ..io.images import read_image


@dataclass
class ImageTask:
    """One image to refine. index: position in the job's task list; path: the image file; width,
    height in pixels; rles: the coarse masks as COCO RLE dicts, in the order of the predictions."""

    index: int
    path: str
    width: int
    height: int
    rles: list[dict]


@dataclass
class ImageResult:
    """What refining one image gave. rles: the refined masks (compressed RLE, task order), None when
    the image failed; patches: patches refined; kept_small: instances that kept their coarse mask
    for being smaller than ``min_size``; error: the message naming the image when it failed."""

    index: int
    rles: list[dict] | None = None
    patches: int = 0
    kept_small: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RefinerSettings:
    """What builds a Refiner, picklable for other processes: config, weights file (None = shipped),
    device ("auto", "cpu", "cuda", ...), fast (Refiner's fast inference; False: eager PyTorch)."""

    config: RefinerConfig = field(default_factory=RefinerConfig)
    weights: str | None = None
    device: str = "auto"
    fast: bool = True

    def build(self, device: str | None = None) -> Refiner:
        return Refiner(self.config, weights=self.weights, device=device or self.device, fast=self.fast)


@dataclass
class LoadedTask:
    """A task with its pixels: image (H, W, 3) uint8 RGB, masks (N, H, W) bool, boxes: N (K, 4)
    int32 patch boxes, kept_small: how many non-empty masks got no patches for their size."""

    task: ImageTask
    image: np.ndarray
    masks: np.ndarray
    boxes: list[np.ndarray]
    kept_small: int


def load_task(task: ImageTask, refiner: Refiner) -> LoadedTask:
    """Decode the image and masks and extract the patch boxes (the work that can run ahead of the
    network). Raises DatasetError naming the image when it is missing, unreadable or of another size."""
    image = read_image(task.path, expected_size=(task.width, task.height))
    masks = np.stack([decode_rle(r) for r in task.rles]) if task.rles else np.zeros((0, task.height, task.width), bool)
    boxes = [refiner.patches(m) for m in masks]
    min_size = refiner.config.min_size
    kept_small = 0
    for mask, b in zip(masks, boxes):
        box = mask_bbox(mask) if not len(b) else None
        kept_small += box is not None and max(box[2] - box[0], box[3] - box[1]) < min_size
    return LoadedTask(task, image, masks, boxes, int(kept_small))


def refine_loaded(refiner: Refiner, loaded: LoadedTask) -> ImageResult:
    """Run the network on a loaded task and encode the refined masks."""
    refined = refiner.refine(loaded.image, loaded.masks, boxes=loaded.boxes)
    return ImageResult(loaded.task.index, [encode_rle(r.mask) for r in refined],
                       patches=int(sum(len(b) for b in loaded.boxes)), kept_small=loaded.kept_small)


def failed(task: ImageTask, exc: BaseException) -> ImageResult:
    """The result of a task whose loading or refining raised ``exc``: a message naming the image."""
    if isinstance(exc, DatasetError):
        return ImageResult(task.index, error=str(exc))
    return ImageResult(task.index, error=f"{Path(task.path)}: refinement failed ({type(exc).__name__}: {exc})")


def refine_task(refiner: Refiner, task: ImageTask) -> ImageResult:
    """Load and refine one task; any exception becomes a failed result, so the other images go on."""
    try:
        return refine_loaded(refiner, load_task(task, refiner))
    except Exception as exc:  # a worker exception is reported for this image only
        return failed(task, exc)
