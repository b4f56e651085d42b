"""Training of the refinement network: patch sets from ground truth + predictions, the BPR recipe, checkpoints.

Patches (as the reference BPR makes its training set): every predicted instance whose best IoU
with a same-class, non-crowd ground-truth instance exceeds 0.5 gives boundary patches
(:func:`bpr_studio.core.patches.boundary_patches`, NMS 0.25); each patch carries the image crop,
the predicted (coarse) mask crop and the matched ground-truth crop as the target. They are kept
at patch resolution as uint8 in a :class:`PatchSet`, which can be saved to an ``.npz`` file so a
long run spends its CPU on the network only. Predictions shorter than ``min_size`` on their box's
longer side give no patches (the Refiner does not refine them either).

Polygon annotations (COCO's) are right to 1-3 px, not to the pixel: their patches carry an ignore
``band`` (px), and the loss leaves out the pixels within that distance of the ground-truth
boundary. Such patches teach appearance (shadows, blur, clutter, where not to leak); patches with
exact masks (``band`` 0, e.g. synthetic scenes) teach where the boundary lies.

Recipe (the reference's): 2-class cross-entropy at input resolution (weighted by the bands above;
``boundary_weight`` optionally weighs up the pixels along exact boundaries), SGD lr 0.01, momentum
0.9, weight decay 5e-4, poly decay with power 0.9 (down to 1e-4), random horizontal and vertical
flips and photometric distortion (brightness +-32, contrast and saturation x0.5-1.5). The
schedule's progress is ``max(iteration / iters, elapsed / max_seconds)``, so a run given a time
budget still ends with a decayed learning rate.

Distillation (``teacher``): the loss also pulls the network's probabilities towards those of
another trained network run on the same augmented patches at its own input size (e.g. the
precise model at input 128 teaching the default at 64), ``distill`` being that term's share.

Int8-aware fine-tuning (``int8_share`` > 0): each step also runs the network with ONNX Runtime's
int8 rounding emulated (:class:`bpr_studio.core.qat.Int8Emulation`), and the loss mixes that pass's
loss (that share) with the float pass's, so the int8 graph (the fast CPU path) learns what the
targets or the teacher say too; BatchNorm statistics stay frozen (what the int8 graph folds). Meant
for a short run from trained weights (``init``) with the same weights as teacher. With
``int8_share`` 1 the float pass is not run and the float network is not trained: the weights file
keeps the ``init`` weights for the float paths and the trained ones as its ``int8_state_dict``, the
weights the fast CPU path quantises (core.model.save_weights).

Checkpoints ``<out>.ckpt`` (model, optimizer, iteration, elapsed time) and the weights file
``<out>`` (float16, :func:`bpr_studio.core.model.save_weights`) are written atomically every
``checkpoint_seconds`` and at the end, so a run can be stopped at any time and resumed with
``resume``; batch ``i`` depends on the seed and ``i`` alone (:class:`TrainBatches`), so the resumed
run sees the batches the uninterrupted one would. The network trains on ``config.device`` (CPU or
GPU) while ``config.workers`` processes build the next batches.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_write
from .config import RefinerConfig, TrainConfig
from .matching import match_instances
from .metrics import mask_iou
from .patches import IMAGENET_MEAN, IMAGENET_STD, crop_boxes, input_affine, resize_inputs
from .refiner import patch_boxes


class TrainInputError(ValueError):
    """A patch file or checkpoint that cannot be used, or no training patches at all; the message
    names the file and what was expected."""


@dataclass
class PatchSet:
    """Training patches at patch resolution.

    images: (K, P, P, 3) uint8 RGB. coarse: (K, P, P) bool predicted mask. target: (K, P, P) bool
    ground truth. band: (K,) uint8 ignore band around the target's boundary in pixels (0 = the
    target is exact; None = all 0).
    """

    images: np.ndarray
    coarse: np.ndarray
    target: np.ndarray
    band: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.band is None:
            self.band = np.zeros(len(self.images), np.uint8)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def empty(cls, patch_size: int) -> "PatchSet":
        p = patch_size
        return cls(np.zeros((0, p, p, 3), np.uint8), np.zeros((0, p, p), bool), np.zeros((0, p, p), bool))

    @classmethod
    def concatenate(cls, sets: Iterable["PatchSet"]) -> "PatchSet":
        sets = list(sets)
        return cls(np.concatenate([s.images for s in sets]), np.concatenate([s.coarse for s in sets]),
                   np.concatenate([s.target for s in sets]), np.concatenate([s.band for s in sets]))

    def subset(self, index: np.ndarray) -> "PatchSet":
        return PatchSet(self.images[index], self.coarse[index], self.target[index], self.band[index])

    def with_band(self, band: int) -> "PatchSet":
        """The same patches with an ignore band of ``band`` px around every target boundary."""
        return PatchSet(self.images, self.coarse, self.target, np.full(len(self), band, np.uint8))

    def save(self, path: str | os.PathLike) -> Path:
        """Write to an ``.npz`` file atomically (masks bit-packed)."""
        path = Path(path)
        k, p = len(self), self.images.shape[1]
        arrays = dict(images=self.images, coarse=np.packbits(self.coarse.reshape(k, p * p), axis=1),
                      target=np.packbits(self.target.reshape(k, p * p), axis=1), band=self.band, patch_size=np.int32(p))
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PatchSet":
        """Read a file written by :meth:`save`. Raises TrainInputError naming the file if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: patch file not found")
        try:
            with np.load(path) as data:
                p = int(data["patch_size"])
                images = data["images"]
                k = len(images)
                coarse = np.unpackbits(data["coarse"], axis=1, count=p * p).reshape(k, p, p).astype(bool)
                target = np.unpackbits(data["target"], axis=1, count=p * p).reshape(k, p, p).astype(bool)
                band = data["band"] if "band" in data else None  # files written before bands: exact
        except (KeyError, ValueError, OSError) as exc:
            raise TrainInputError(f"{path}: not a BPR Studio patch file ({exc})") from exc
        return cls(images, coarse, target, band)

    @staticmethod
    def shape(path: str | os.PathLike) -> tuple[int, ...]:
        """Shape (K, P, P, 3) of the images in a file written by :meth:`save`, read from its header
        (no data is loaded). Raises FileNotFoundError or TrainInputError naming the file."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: patch file not found")
        try:
            with zipfile.ZipFile(path) as archive, archive.open("images.npy") as f:
                version = np.lib.format.read_magic(f)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)(f)
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
            raise TrainInputError(f"{path}: not a BPR Studio patch file ({exc})") from exc
        return tuple(int(n) for n in header[0])

    @classmethod
    def load_all(cls, paths: list[str | os.PathLike]) -> "PatchSet":
        """The patches of several files (:meth:`save`) as one set. The whole is allocated once and
        the files are read into it one at a time, so the peak memory is the whole plus the largest
        file, not twice the whole (as loading every file and concatenating would be). Files of
        another patch size than the first are refused before anything is loaded."""
        if not paths:
            raise TrainInputError("no patch files given")
        shapes = [cls.shape(path) for path in paths]
        for path, shape in zip(paths, shapes):
            if shape[1:] != shapes[0][1:]:
                raise TrainInputError(f"{path}: patches of {shape[1]} px, expected {shapes[0][1]} px "
                                      f"(as in {paths[0]})")
        total, p = sum(shape[0] for shape in shapes), shapes[0][1]
        whole = cls(np.empty((total, p, p, 3), np.uint8), np.empty((total, p, p), bool),
                    np.empty((total, p, p), bool), np.empty(total, np.uint8))
        start = 0
        for path in paths:
            part = cls.load(path)
            end = start + len(part)
            whole.images[start:end], whole.coarse[start:end] = part.images, part.coarse
            whole.target[start:end], whole.band[start:end] = part.target, part.band
            start = end
        return whole


def image_patches(image: np.ndarray, gt: np.ndarray, gt_categories: list[int], pred: np.ndarray,
                  pred_categories: list[int], gt_crowd: list[bool] | None = None,
                  config: RefinerConfig | None = None, iou_thr: float = 0.5) -> PatchSet:
    """Training patches of one image, sampled as the Refiner with ``config`` samples them (patch size,
    NMS, minimum instance size; None = RefinerConfig's defaults).

    image: (H, W, 3) uint8 RGB. gt: (N, H, W) bool ground truth with their categories (and crowd
    flags). pred: (M, H, W) bool predictions with their categories. Predictions whose best IoU
    with a same-class non-crowd ground truth is at most ``iou_thr``, and those below
    ``config.min_size``, are skipped.
    """
    config = config or RefinerConfig()
    index, iou = match_instances(pred, pred_categories, gt, gt_categories, gt_crowd)
    sets = []
    for mask, j, v in zip(pred, index, iou):
        if v <= iou_thr:
            continue
        boxes = patch_boxes(mask, config)
        if len(boxes):
            sets.append(PatchSet(crop_boxes(image, boxes), crop_boxes(mask, boxes), crop_boxes(gt[j], boxes)))
    return PatchSet.concatenate(sets) if sets else PatchSet.empty(config.patch_size)


def augment(images: np.ndarray, coarse: np.ndarray, target: np.ndarray,
            rng: np.random.Generator, mask_jitter: float = 0.0,
            mask_jitter_px: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random flips and photometric distortion of a batch; with ``mask_jitter`` > 0, that share of
    the coarse mask patches is also dilated or eroded (even odds) by 1 to ``mask_jitter_px`` px
    (uniform; a 3x3 cross applied that many times), so that the network cannot take the coarse
    boundary's position to the pixel for the true one.

    images: (B, P, P, 3) uint8; coarse, target: (B, P, P) bool. Returns new arrays of the same
    shapes and dtypes. With ``mask_jitter`` 0 no random numbers are drawn for it, and with
    ``mask_jitter_px`` 1 none for the radius (the batch is the one made without those options).
    """
    b = len(images)
    images, coarse, target = images.copy(), coarse.copy(), target.copy()
    hflip = rng.random(b) < 0.5
    vflip = rng.random(b) < 0.5
    for arr in (images, coarse, target):
        arr[hflip] = arr[hflip][:, :, ::-1]
        arr[vflip] = arr[vflip][:, ::-1]
    x = images.astype(np.float32)
    x += np.where(rng.random(b) < 0.5, rng.uniform(-32, 32, b), 0).astype(np.float32)[:, None, None, None]
    contrast = np.where(rng.random(b) < 0.5, rng.uniform(0.5, 1.5, b), 1.0).astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = mean + (x - mean) * contrast[:, None, None, None]
    saturation = np.where(rng.random(b) < 0.5, rng.uniform(0.5, 1.5, b), 1.0).astype(np.float32)
    gray = x.mean(axis=3, keepdims=True)
    x = gray + (x - gray) * saturation[:, None, None, None]
    if mask_jitter > 0:
        jitter = rng.random(b) < mask_jitter
        grow = rng.random(b) < 0.5
        radius = rng.integers(1, mask_jitter_px + 1, b) if mask_jitter_px > 1 else np.ones(b, int)
        for step in range(1, int(radius[jitter].max(initial=0)) + 1):
            for sign in (True, False):
                chosen = jitter & (grow == sign) & (radius >= step)
                coarse[chosen] = _cross_step(coarse[chosen], sign)
    return np.clip(x, 0, 255).round().astype(np.uint8), coarse, target


def loss_weights(target: np.ndarray, band: np.ndarray, boundary_weight: float = 1.0) -> np.ndarray:
    """Per-pixel loss weights (B, P, P) float32 for targets (B, P, P) bool: 0 within ``band[i]`` px
    (chessboard distance) of the boundary of ``target[i]``; for exact targets (band 0),
    ``boundary_weight`` on the pixels that touch the boundary (the 2-px-wide band of pixels with a
    neighbour of the other value, 8-connected); 1 elsewhere."""
    weights = np.ones(target.shape, np.float32)
    width = np.where(band > 0, band, 1 if boundary_weight != 1.0 else 0).astype(int)
    for w in np.unique(width[width > 0]):
        chosen = width == w
        t = target[chosen]
        near = _square_max(t, w) != ~_square_max(~t, w)  # dilated != eroded by a (2w+1)^2 square
        weights[chosen] = np.where(near, np.where(band[chosen] == 0, boundary_weight, 0.0)[:, None, None], 1.0)
    return weights


def _cross_step(masks: np.ndarray, grow: bool) -> np.ndarray:
    """(N, P, P) bool masks dilated (grow) or eroded by a 3x3 cross, the border replicated.

    NumPy rather than OpenCV: batches are built in forked worker processes, where OpenCV's thread
    pool, inherited from the parent without its threads, can hang."""
    p = np.pad(masks, ((0, 0), (1, 1), (1, 1)), mode="edge")
    shifted = (p[:, 1:-1, 1:-1], p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:])
    return np.logical_or.reduce(shifted) if grow else np.logical_and.reduce(shifted)


def _square_max(masks: np.ndarray, width: int) -> np.ndarray:
    """(N, P, P) bool masks dilated by a (2 width + 1)^2 square (outside the patch counts as False)."""
    p = masks.shape[1]
    out = np.pad(masks, ((0, 0), (width, width), (width, width)))
    out = np.logical_or.reduce([out[:, i:i + p] for i in range(2 * width + 1)])
    return np.logical_or.reduce([out[:, :, i:i + p] for i in range(2 * width + 1)])


def batch_arrays(images: np.ndarray, coarse: np.ndarray, target: np.ndarray, band: np.ndarray | None = None,
                 boundary_weight: float = 1.0) -> tuple[torch.Tensor, ...]:
    """A batch at patch resolution as CPU tensors, compact enough to ship from a worker process:
    images (B, P, P, 3) uint8, coarse and target (B, P, P) bool, loss weights (B, P, P) float32
    (:func:`loss_weights`; ``band`` None = every target exact). :func:`batch_tensors` makes the
    network's input from them on the training device."""
    if band is None:
        band = np.zeros(len(target), np.uint8)
    weights = loss_weights(target, band, boundary_weight)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in (images, coarse, target, weights))


def batch_tensors(images: torch.Tensor, coarse: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                  input_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`batch_arrays`' tensors (on any device) -> network input (B, 4, S, S) float32, target
    (B, S, S) int64 (1 = foreground) and loss weights (B, S, S) float32 on that device, S = input_size.

    The input is :func:`bpr_studio.core.patches.network_inputs`' (ImageNet-normalised image, mask
    -1/+1: the same ``input_affine`` and ``resize_inputs``, so equal on the CPU), made on the device;
    the target is resized bilinearly and thresholded at 0.5, the weights by nearest neighbour.
    """
    x = batch_inputs(images, coarse, input_size)
    t, w = target.unsqueeze(1).float(), weights.unsqueeze(1)
    if t.shape[-1] != input_size:
        size = (input_size, input_size)
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
        w = F.interpolate(w, size=size, mode="nearest")
    return x, (t[:, 0] > 0.5).long(), w[:, 0]


def batch_inputs(images: torch.Tensor, coarse: torch.Tensor, input_size: int) -> torch.Tensor:
    """Images (B, P, P, 3) uint8 and coarse masks (B, P, P) bool (any device) -> the network input
    (B, 4, S, S) float32 on that device, S = input_size (see :func:`batch_tensors`)."""
    scale, shift = (torch.from_numpy(a).to(images.device).view(1, 4, 1, 1) for a in input_affine())
    x = torch.cat([images.permute(0, 3, 1, 2).float(), coarse.unsqueeze(1).float()], dim=1) * scale + shift
    return resize_inputs(x, input_size)


def weighted_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (B, 2, S, S) against target (B, S, S) int64, averaged with weights (B, S, S)."""
    ce = F.cross_entropy(logits, target, reduction="none")
    return (ce * weights).sum() / weights.sum().clamp(min=1.0)


def load_teacher(path: str | os.PathLike, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The network a run distils (TrainConfig.teacher): frozen, in eval mode on ``device``, and the
    input side it was trained at. Raises TrainInputError naming the file when it cannot be used."""
    from .model import WeightsError, load_weights

    try:
        teacher, info = load_weights(path, device=device)
    except WeightsError as exc:
        raise TrainInputError(f"teacher: {exc}") from exc
    norm = info["input_norm"]
    if (tuple(norm["mean"]), tuple(norm["std"])) != (IMAGENET_MEAN, IMAGENET_STD):
        raise TrainInputError(f"{path}: teacher normalises its input with {norm}, expected ImageNet's "
                              "(the training inputs are made with it)")
    return teacher.requires_grad_(False), info["input_size"]


@torch.no_grad()
def teacher_probabilities(teacher: torch.nn.Module, images: torch.Tensor, coarse: torch.Tensor,
                          teacher_size: int, input_size: int) -> torch.Tensor:
    """The teacher's class probabilities (B, 2, S, S) float32 for a batch (:func:`batch_inputs`'
    images and coarse masks), run at its own input side and resized to S = input_size (area
    averaging down, bilinear up)."""
    probs = torch.softmax(teacher(batch_inputs(images, coarse, teacher_size)).float(), 1)
    if teacher_size == input_size:
        return probs
    mode = "area" if teacher_size > input_size else "bilinear"
    return F.interpolate(probs, size=(input_size, input_size), mode=mode)


def distillation_loss(logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """KL divergence of the network's class distribution (logits (B, K, S, S)) from the teacher's
    (probabilities (B, K, S, S)), averaged over pixels; 0 when they agree. Every pixel counts,
    COCO's ignored bands too: there the teacher, not the polygon, says where the boundary lies."""
    pixels = logits.numel() // logits.shape[1]
    return F.kl_div(F.log_softmax(logits.float(), 1), teacher_probs, reduction="sum") / pixels


def learning_rate(config: TrainConfig, iteration: int, elapsed: float) -> float:
    """Poly schedule at ``max(iteration / iters, elapsed / max_seconds)``."""
    progress = iteration / config.iters
    if config.max_seconds:
        progress = max(progress, elapsed / config.max_seconds)
    progress = min(progress, 1.0)
    return (config.lr - config.min_lr) * (1.0 - progress) ** config.power + config.min_lr


@torch.no_grad()
def validate(model: torch.nn.Module, patches: PatchSet, input_size: int, batch_size: int = 32,
             device: str | torch.device = "cpu", forward: Callable | None = None) -> dict:
    """Loss and mean IoU of the refined vs the coarse patches against the targets, the network on ``device``.

    forward: what computes the logits from the network input (default ``model``; e.g. an
    :class:`bpr_studio.core.qat.Int8Emulation` of it). Returns {"loss", "iou_refined",
    "iou_coarse"} (means over patches, at patch resolution).
    """
    forward = forward or model
    was_training = model.training
    model.eval()
    losses, refined_iou, coarse_iou = [], [], []
    p = patches.images.shape[1]
    for s in range(0, len(patches), batch_size):
        sl = slice(s, s + batch_size)
        raw = batch_arrays(patches.images[sl], patches.coarse[sl], patches.target[sl], patches.band[sl])
        x, t, w = batch_tensors(*(v.to(device) for v in raw), input_size)
        logits = forward(x)
        losses.append(float(weighted_loss(logits, t, w)) * len(x))
        prob = torch.softmax(logits, 1)[:, 1:2]
        if prob.shape[-1] != p:
            prob = F.interpolate(prob, size=(p, p), mode="bilinear", align_corners=False)
        refined = (prob[:, 0] > 0.5).cpu().numpy()
        for r, c, g in zip(refined, patches.coarse[sl], patches.target[sl]):
            refined_iou.append(mask_iou(r, g))
            coarse_iou.append(mask_iou(c, g))
    model.train(was_training)
    n = max(len(patches), 1)
    return {"loss": sum(losses) / n, "iou_refined": float(np.mean(refined_iou)), "iou_coarse": float(np.mean(coarse_iou))}


class TrainBatches(torch.utils.data.Dataset):
    """The training batches of a run, batch ``i`` a function of ``(config.seed, i)`` alone.

    Epoch ``e`` visits the training patches in the order ``default_rng([seed, e]).permutation``,
    ``config.batch_size`` at a time (the last incomplete batch of an epoch is left out); batch ``i``
    is augmented with ``default_rng([seed, i, 1])``. So a resumed run sees the batches an
    uninterrupted one would, and batches built in worker processes are the ones built in the
    training process. ``batches[i]`` is :func:`batch_arrays`' tuple (at patch resolution, uint8 and
    bool where it can be: a batch of 512 patches of 64 px is 17 MB).
    """

    def __init__(self, patches: PatchSet, train_index: np.ndarray, config: TrainConfig):
        self.patches, self.train_index, self.config = patches, train_index, config
        self._epoch, self._order = -1, np.empty(0, np.int64)

    def indices(self, iteration: int) -> np.ndarray:
        """Indices into the patch set of batch ``iteration``, sorted."""
        b = self.config.batch_size
        per_epoch = max(len(self.train_index) // b, 1)
        epoch, j = divmod(iteration, per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.config.seed, epoch]).permutation(
                len(self.train_index))
        return self.train_index[np.sort(self._order[j * b:(j + 1) * b])]

    def __getitem__(self, iteration: int) -> tuple[torch.Tensor, ...]:
        idx, c = self.indices(iteration), self.config
        rng = np.random.default_rng([c.seed, iteration, 1])
        images, coarse, target = augment(self.patches.images[idx], self.patches.coarse[idx], self.patches.target[idx],
                                         rng, c.mask_jitter, c.mask_jitter_px)
        return batch_arrays(images, coarse, target, self.patches.band[idx], c.boundary_weight)


# iterations between two calibrations of an int8-aware run's emulated ranges: they follow the weights as
# ONNX Runtime's calibration of the final weights will (stale for 5 minutes, the ranges let the weights
# drift where the int8 graph made from them leaned, docs/engine_bench.md); they cost about 3% of the time
RECALIBRATE_EVERY = 50


def _one_thread_worker(_: int) -> None:
    """A batch worker computes on one thread: the workers together are the parallelism (no OpenCV
    here: see :func:`_cross_step`)."""
    torch.set_num_threads(1)


def batch_loader(batches: TrainBatches, first: int, workers: int, pin_memory: bool = False
                 ) -> torch.utils.data.DataLoader:
    """Batches ``first``, ``first + 1``, ... of ``batches``, built ``workers`` processes ahead (0 = in
    this process). Workers are forked, so they read the patch arrays without copying them; where
    fork does not exist (Windows, ...) the batches are built in this process."""
    import multiprocessing

    if workers and "fork" not in multiprocessing.get_all_start_methods():
        workers = 0
    return torch.utils.data.DataLoader(
        batches, batch_size=None, sampler=range(first, batches.config.iters), num_workers=workers,
        pin_memory=pin_memory, worker_init_fn=_one_thread_worker if workers else None,
        multiprocessing_context="fork" if workers else None, prefetch_factor=4 if workers else None)


def train(patches: PatchSet, out: str | os.PathLike, config: TrainConfig | None = None,
          resume: str | os.PathLike | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None, init: str | os.PathLike | None = None) -> list[float]:
    """Train a refinement network on ``patches`` and write its weights to ``out`` (float16).

    resume: a checkpoint ``<out>.ckpt`` of an earlier run (its model, optimizer, iteration and
    elapsed time are restored; the config given here applies from then on). log: called with one
    line per log interval and checkpoint (e.g. to append to a log file). init: a weights file
    (save_weights, e.g. the shipped model) to start from instead of random weights; the schedule
    starts afresh. The network trains on ``config.device``, its batches built by
    ``config.workers`` processes (:class:`TrainBatches`). Returns the training losses of the
    iterations run in this call.
    """
    from tqdm import tqdm

    from .model import build_model, load_weights, save_weights

    config = config or TrainConfig()
    device = torch.device(config.device)
    out = Path(out)
    ckpt_path = out.with_name(out.name + ".ckpt")
    log = log or (lambda line: None)
    if config.threads:
        torch.set_num_threads(config.threads)
    if len(patches) == 0:
        raise TrainInputError("no training patches: no prediction overlaps a same-class ground truth by IoU > 0.5")
    torch.manual_seed(config.seed)
    order = np.random.default_rng(config.seed).permutation(len(patches))
    n_val = min(config.val_patches, len(patches) // 5)
    # the training part is indexed, not copied: a copy would hold the patches twice for the whole run
    val, train_index = patches.subset(np.sort(order[:n_val])), np.sort(order[n_val:])

    if init is not None and resume is not None:
        raise TrainInputError("give either a weights file to start from (init) or a checkpoint to resume, not both")
    model = build_model(config.model, pretrained=init is None and resume is None)
    base_meta = None  # int8_share 1: the metadata of the weights file started from, kept with its weights
    if init is not None:
        started, init_info = load_weights(init, arch=config.model)
        model.load_state_dict(started.state_dict())
        base_meta = init_info["meta"]
        log(f"starting from the weights in {init}")
    model.to(device).train()
    if config.int8_share == 1.0 and init is None and resume is None:
        raise TrainInputError("int8_share 1 trains the weights of the int8 graph alone: give the trained weights "
                              "(init) whose float network it is to agree with")
    base = copy.deepcopy(model).eval() if config.int8_share == 1.0 else None  # the float network the file keeps
    emulation = None
    if config.int8_share > 0:
        from .inference import calibration_inputs, int8_weight_bits
        from .qat import Int8Emulation

        model.eval()  # frozen BatchNorm statistics: what the int8 graph folds into the convolutions
        emulation = Int8Emulation(model, int8_weight_bits())  # calibrated once the weights are loaded
        calibration = calibration_inputs(config.input_size).to(device)  # as the Refiner calibrates
    teacher, teacher_size = (load_teacher(config.teacher, device) if config.teacher and config.distill > 0
                             else (None, 0))
    if teacher is not None:
        log(f"distilling {config.teacher} (input {teacher_size}) with weight {config.distill}")
    elif config.teacher:
        log(f"distill 0: the teacher {config.teacher} is not run")
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    iteration, elapsed_before = 0, 0.0
    if resume is not None:
        try:
            state = torch.load(resume, map_location="cpu", weights_only=True)
        except Exception as exc:  # missing, truncated or foreign file
            raise TrainInputError(f"{resume}: not a readable training checkpoint ({type(exc).__name__}: {exc})") from exc
        if not isinstance(state, dict) or "optimizer" not in state:
            raise TrainInputError(f"{resume}: not a training checkpoint (expected OUT.ckpt written by bpr-studio train)")
        if state.get("arch") != config.model:
            raise TrainInputError(f"{resume}: checkpoint of {state.get('arch')}, expected {config.model}")
        model.load_state_dict(state["model"])
        if base is not None:
            if "base_model" not in state:
                raise TrainInputError(f"{resume}: checkpoint of a run that trained the float network too "
                                      "(int8_share below 1); resume it with its own int8_share")
            base.load_state_dict(state["base_model"])
            base_meta = state.get("base_meta")
        optimizer.load_state_dict(state["optimizer"])  # its tensors follow the parameters' device
        iteration, elapsed_before = int(state["iteration"]), float(state["elapsed"])
        log(f"resumed from {resume} at iteration {iteration} ({elapsed_before:.0f} s)")
    if emulation is not None:  # after the weights are loaded: the ranges are theirs
        emulation.calibrate(calibration)
        log(f"int8-aware: {config.int8_share:g} of each step's loss from the emulated int8 pass")

    def meta(extra: dict) -> dict:
        trained_on = {**dataclasses.asdict(config), "patch_size": int(patches.images.shape[1])}
        if emulation is not None:  # the grid the int8 weights were fitted to: this machine's (8 bits with VNNI)
            trained_on["int8_weight_bits"] = emulation.weight_bits
        return {"train": trained_on, "patches": len(train_index), "iteration": iteration,
                "elapsed_s": round(elapsed_before + time.monotonic() - start, 1), **extra}

    def checkpoint(extra: dict) -> None:
        state = {"arch": config.model, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "iteration": iteration, "elapsed": elapsed_before + time.monotonic() - start,
                 "config": dataclasses.asdict(config)}
        if base is not None:
            state["base_model"], state["base_meta"] = base.state_dict(), base_meta
        atomic_write(ckpt_path, lambda f: torch.save(state, f))
        if base is None:
            save_weights(out, model, config.model, meta=meta(extra), half=True)
        else:
            # the file's own int8 weights replace a veto on quantising its float ones ("int8": False)
            kept = {k: v for k, v in (base_meta or {}).items() if k not in ("int8", "int8_why")}
            save_weights(out, base, config.model, meta={**kept, "int8_state": meta(extra)}, half=True,
                         int8_state=model.state_dict())

    def validation_scores() -> dict:
        """Validation scores of the network, and of its emulated int8 graph in an int8-aware run."""
        if not len(val):
            return {}
        scores = validate(model, val, config.input_size, device=device)
        if emulation is not None:
            scores["int8"] = validate(model, val, config.input_size, device=device, forward=emulation)
        return scores

    losses: list[float] = []
    start = time.monotonic()
    last_ckpt = start
    bar = tqdm(total=config.iters, initial=iteration, desc="train", disable=not progress, dynamic_ncols=True)
    window: list[float] = []
    loader = batch_loader(TrainBatches(patches, train_index, config), iteration, config.workers,
                          pin_memory=device.type == "cuda")
    for raw in loader:
        elapsed = elapsed_before + time.monotonic() - start
        if config.max_seconds and elapsed >= config.max_seconds:
            break
        lr = learning_rate(config, iteration, elapsed)
        for group in optimizer.param_groups:
            group["lr"] = lr
        raw = [v.to(device, non_blocking=True) for v in raw]
        x, t, w = batch_tensors(*raw, config.input_size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
            soft = (teacher_probabilities(teacher, raw[0], raw[1], teacher_size, config.input_size)
                    if teacher is not None else None)

            def objective(logits: torch.Tensor) -> torch.Tensor:
                loss = weighted_loss(logits, t, w)
                if soft is None:
                    return loss
                return (1.0 - config.distill) * loss + config.distill * distillation_loss(logits, soft)

            if emulation is None:
                loss = objective(model(x))
            elif config.int8_share == 1.0:
                loss = objective(emulation(x))
            else:
                loss = ((1.0 - config.int8_share) * objective(model(x))
                        + config.int8_share * objective(emulation(x)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iteration += 1
        if emulation is not None and iteration % RECALIBRATE_EVERY == 0:
            emulation.calibrate(calibration)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"training diverged at iteration {iteration} (loss {value})")
        losses.append(value)
        window.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.5f}")
        if iteration % 50 == 0:
            seen = len(losses) * config.batch_size / max(time.monotonic() - start, 1e-9)
            log(f"iter {iteration} loss {np.mean(window):.4f} lr {lr:.5f} "
                f"elapsed {elapsed_before + time.monotonic() - start:.0f}s patches/s {seen:.1f}")
            window = []
        if time.monotonic() - last_ckpt >= config.checkpoint_seconds:
            scores = validation_scores()
            checkpoint({"val": scores})
            log(f"checkpoint at iter {iteration}: val {scores}")
            last_ckpt = time.monotonic()
    del loader  # stops the batch workers
    bar.close()
    scores = validation_scores()
    checkpoint({"val": scores})
    log(f"finished at iter {iteration}: val {scores}")
    return losses
