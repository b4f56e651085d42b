"""Adaptation: fine-tune refinement weights on an annotator's corrections, kept only when they beat the base weights.

A correction is an instance whose final mask the annotator set (accepted after refinement, touched
up, drawn): its coarse mask is the network's input and its final mask the target. Training pairs:
the boundary patches of the coarse mask (as :func:`bpr_studio.core.train.image_patches` makes
them), plus those of ``simulated`` Mask R-CNN-like coarse masks of the final mask
(:func:`bpr_studio.core.simulate.coarse_mask`) for more pairs of the same objects.

The guard: a fifth of the corrected instances (at least ``min_holdout``) is held out before
training; the base and the adapted weights refine their coarse masks, and the adapted weights are
kept only when their mean boundary F-score (1 px) against the final masks is higher and their mean
IoU is not lower. Otherwise nothing is written and the result says why.

Training spends the time budget in slices of at most ``slice_seconds`` (each a
:func:`bpr_studio.core.train.train` call started from the previous slice's weights, the learning
rate following one poly schedule over the whole budget), so progress is reported and a cancel
request is honoured between slices.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import RefinerConfig
from .metrics import boundary_f_score, mask_iou
from .patches import boundary_patches, crop_boxes
from .simulate import coarse_mask
from .train import PatchSet, TrainConfig, train


class AdaptError(ValueError):
    """Too few corrections to adapt on (the message says how many are needed)."""


@dataclass
class CorrectedImage:
    """The corrected instances of one image.

    name: the image's file name (for messages). read: returns the pixels, (H, W, 3) uint8 RGB.
    coarse, final: per instance, the coarse (network input) and final (annotator's) masks, (H, W) bool.
    """

    name: str
    read: Callable[[], np.ndarray]
    coarse: list[np.ndarray]
    final: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.final)


@dataclass
class AdaptResult:
    """What an adaptation did.

    kept: the adapted weights beat the base ones on the held-out corrections (and were written to
    ``out``). before, after: {"boundary_f", "iou"} means over the held-out instances (0-1) with the
    base and the adapted weights (after is empty when training was cancelled). train_instances,
    holdout_instances, patches: what it used. train_seconds: time spent training. cancelled: stopped
    by ``should_stop``. message: one line for the user.
    """

    kept: bool
    before: dict
    after: dict
    train_instances: int
    holdout_instances: int
    patches: int
    train_seconds: float
    message: str
    out: Path | None = None
    cancelled: bool = False
    holdout: list = field(default_factory=list, repr=False)


def split_holdout(count: int, fraction: float = 0.2, min_holdout: int = 3, seed: int = 0) -> np.ndarray:
    """(count,) bool: which of ``count`` corrected instances are held out for the guard.

    A random ``fraction`` of them, at least ``min_holdout``; at least as many remain for training.
    Raises AdaptError when there are fewer than ``2 * min_holdout`` instances.
    """
    if count < 2 * min_holdout:
        raise AdaptError(f"{count} corrected instance(s): adaptation needs at least {2 * min_holdout} "
                         f"(accepted after refinement, touched up or drawn); {min_holdout} are held out to check it")
    n = max(min_holdout, int(round(fraction * count)))
    held = np.zeros(count, bool)
    held[np.random.default_rng(seed).permutation(count)[:n]] = True
    return held


def correction_patches(image: np.ndarray, coarse: np.ndarray, final: np.ndarray, rng: np.random.Generator,
                       simulated: int = 2, patch_size: int = RefinerConfig.patch_size,
                       nms_thr: float = RefinerConfig.nms_thr) -> PatchSet:
    """Training patches of one corrected instance.

    image: (H, W, 3) uint8. coarse, final: (H, W) bool. The boundary patches of the coarse mask (when
    it overlaps the final mask by IoU > 0.5, as in training) and of ``simulated`` coarse masks drawn
    from the final mask, each with the final mask as the target.
    """
    inputs = [coarse] if mask_iou(coarse, final) > 0.5 else []
    inputs += [coarse_mask(final, rng) for _ in range(simulated)]
    sets = []
    for mask in inputs:
        boxes = boundary_patches(mask, patch_size, nms_thr)
        if len(boxes):
            sets.append(PatchSet(images=crop_boxes(image, boxes), coarse=crop_boxes(mask, boxes),
                                 target=crop_boxes(final, boxes)))
    return PatchSet.concatenate(sets) if sets else PatchSet.empty(patch_size)


def holdout_scores(refiner, images: list[CorrectedImage], held: list[np.ndarray]) -> tuple[dict, list[dict]]:
    """Refine the held-out instances and score them against their final masks.

    refiner: a :class:`bpr_studio.core.refiner.Refiner`. held: per image, (n,) bool of its instances
    that are held out. Returns ({"boundary_f", "iou"} means, one {"image", "instance", "boundary_f",
    "iou"} per held-out instance).
    """
    rows = []
    for image, chosen in zip(images, held):
        index = np.flatnonzero(chosen)
        if not len(index):
            continue
        refined = refiner.refine(image.read(), np.stack([image.coarse[j] for j in index]))
        for j, result in zip(index, refined):
            rows.append({"image": image.name, "instance": int(j),
                         "boundary_f": boundary_f_score(result.mask, image.final[j]),
                         "iou": mask_iou(result.mask, image.final[j])})
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("boundary_f", "iou")}
    return means, rows


def beats(after: dict, before: dict) -> bool:
    """The guard's rule: higher mean boundary F and a mean IoU that is not lower."""
    return after["boundary_f"] > before["boundary_f"] and after["iou"] >= before["iou"]


def _poly(lr: float, progress: float, power: float = 0.9, min_lr: float = 1e-4) -> float:
    return (lr - min_lr) * (1.0 - min(progress, 1.0)) ** power + min_lr


def adapt_weights(images: list[CorrectedImage], out: str | Path, base_weights: str | Path | None = None,
                  minutes: float = 3.0, device: str = "auto", threads: int = 0, simulated: int = 2,
                  lr: float = 0.005, batch_size: int = 16, holdout: float = 0.2, min_holdout: int = 3,
                  seed: int = 0, slice_seconds: float = 30.0, refiner_config: RefinerConfig | None = None,
                  log: Callable[[str], None] | None = None,
                  on_progress: Callable[[float, float], None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  rejected_out: str | Path | None = None) -> AdaptResult:
    """Fine-tune ``base_weights`` on the corrections and write them to ``out`` when the guard keeps them.

    images: the corrections, per image. base_weights: the weights in use (None: the shipped model).
    minutes: the training time budget. device: where the network trains and the guard refines
    ("auto", "cpu", "cuda", ...). threads: torch CPU threads for training (0: torch's
    default). simulated: simulated coarse masks per training instance. lr: the starting learning
    rate of the poly schedule. holdout, min_holdout, seed: the guard's split (see split_holdout).
    refiner_config: patch settings of the guard's refinement (the network input size always comes
    from the weights). log: called with progress lines. on_progress(elapsed, budget) in seconds
    after each training slice. should_stop: polled between slices; True ends the run without
    writing anything. rejected_out: where to write the adapted weights when the guard does not keep
    them (for measurements; None: nowhere). Raises AdaptError when there are too few corrections or no training patches.
    """
    from .model import load_weights, save_weights
    from .refiner import Refiner, default_weights_path, pick_device

    log = log or (lambda line: None)
    should_stop = should_stop or (lambda: False)
    out = Path(out)
    base_weights = Path(base_weights) if base_weights is not None else default_weights_path()
    base_model, info = load_weights(base_weights)
    del base_model
    arch, input_size = info["arch"], info["input_size"]
    refiner_config = refiner_config or RefinerConfig()

    counts = [len(image) for image in images]
    held_all = split_holdout(sum(counts), holdout, min_holdout, seed)
    held = np.split(held_all, np.cumsum(counts)[:-1]) if images else []
    rng = np.random.default_rng(seed)
    sets = []
    for image, chosen in zip(images, held):
        if chosen.all():
            continue
        pixels = image.read()
        for j in np.flatnonzero(~chosen):
            sets.append(correction_patches(pixels, image.coarse[j], image.final[j], rng, simulated,
                                           refiner_config.patch_size, refiner_config.nms_thr))
    patches = PatchSet.concatenate(sets) if sets else PatchSet.empty(refiner_config.patch_size)
    n_train, n_held = int((~held_all).sum()), int(held_all.sum())
    if len(patches) == 0:
        raise AdaptError("the corrected instances give no boundary patches (empty masks?)")
    log(f"{n_train} corrected instance(s) for training ({len(patches)} patches, {simulated} simulated coarse "
        f"mask(s) each), {n_held} held out; base weights {base_weights.name} ({arch}, input {input_size})")

    budget = max(60.0 * minutes, 0.0)
    train_device = str(pick_device(device))
    elapsed, k, cancelled = 0.0, 0, False
    with tempfile.TemporaryDirectory(prefix="bpr-adapt-") as tmp:
        current = base_weights
        work = Path(tmp) / "adapted.pt"
        while elapsed < budget:
            if should_stop():
                cancelled = True
                break
            seconds = min(slice_seconds, budget - elapsed)
            order = np.random.default_rng([seed, k]).permutation(len(patches))
            config = TrainConfig(model=arch, input_size=input_size, max_seconds=seconds, threads=threads,
                                 batch_size=batch_size, lr=_poly(lr, elapsed / budget),
                                 min_lr=_poly(lr, (elapsed + seconds) / budget), val_patches=0, seed=seed + k,
                                 device=train_device)
            start = time.monotonic()
            losses = train(patches.subset(order), work, config, init=current, progress=False)
            elapsed += time.monotonic() - start
            current, k = work, k + 1
            log(f"trained {elapsed:.0f} of {budget:.0f} s, {len(losses)} step(s), loss {np.mean(losses):.4f}")
            if on_progress is not None:
                on_progress(min(elapsed, budget), budget)
        if cancelled or should_stop():
            return AdaptResult(False, {}, {}, n_train, n_held, len(patches), elapsed,
                               "adaptation cancelled; the weights in use are unchanged", cancelled=True)
        if current == base_weights:
            raise AdaptError("no training time: give a budget above 0 minutes")
        log(f"trained for {elapsed:.0f} s; checking on the {n_held} held-out instance(s)")
        before, rows = holdout_scores(Refiner(refiner_config, base_weights, device, fast=False), images, held)
        after, rows_after = holdout_scores(Refiner(refiner_config, current, device, fast=False), images, held)
        for row, row_after in zip(rows, rows_after):
            row.update(boundary_f_adapted=row_after["boundary_f"], iou_adapted=row_after["iou"])
        kept = beats(after, before)
        figures = (f"boundary F {100 * before['boundary_f']:.1f} -> {100 * after['boundary_f']:.1f}, "
                   f"IoU {100 * before['iou']:.1f} -> {100 * after['iou']:.1f} on {n_held} held-out instance(s)")
        if kept or rejected_out is not None:
            model, trained = load_weights(current)
            meta = dict(trained["meta"] or {})
            meta["adapted"] = {"base": str(base_weights), "train_instances": n_train, "holdout_instances": n_held,
                               "patches": len(patches), "seconds": round(elapsed, 1),
                               "before": before, "after": after}
            save_weights(out if kept else rejected_out, model, arch, meta=meta)
        if kept:
            message = f"adapted weights kept: {figures}"
        else:
            message = f"adapted weights not kept (they do not beat the base weights): {figures}"
        log(message)
        return AdaptResult(kept, before, after, n_train, n_held, len(patches), elapsed, message,
                           out=out if kept else None, holdout=rows)
