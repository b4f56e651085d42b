"""Whole-dataset operations on in-memory Datasets: coarse masks simulated from ground truth, masks
replaced by a refiner, GrabCut or the boundary oracle, scoring, training patches, synthetic scenes and
corrections for adaptation.

Every function takes io Datasets (``bpr_studio.io.dataset``); ``ground_truth`` and ``predictions``
hold the same images in the same order (as ``read_coco`` and ``read_coco_results`` give them), and
images are read from the ground truth's paths. The command line, bench/ and the tests call these;
``pipeline.refine`` is the file-to-file refinement of large datasets with shards and engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..core.config import RefinerConfig
from ..core.matching import match_instances
from ..io.dataset import Dataset, ImageRecord, Instance
from ..io.errors import DatasetError
from ..io.images import read_image

AP_KEYS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")


def _match_ground_truth(predictions: ImageRecord, ground_truth: ImageRecord) -> tuple[np.ndarray, np.ndarray]:
    """core.matching.match_instances of one image's predictions to its ground truth: per prediction,
    (index of its best same-category non-crowd ground truth, -1 for none; IoU)."""
    return match_instances([i.rle for i in predictions.instances], [i.category_id for i in predictions.instances],
                           [i.rle for i in ground_truth.instances], [i.category_id for i in ground_truth.instances],
                           [i.iscrowd for i in ground_truth.instances])


def replace_masks(ground_truth: Dataset, predictions: Dataset,
                  new_masks: Callable[[np.ndarray, ImageRecord], list[np.ndarray]], desc: str = "",
                  progress: bool = False) -> Dataset:
    """The predictions with their masks replaced (categories and scores kept).

    new_masks(image (H, W, 3) uint8 RGB, predictions' record) -> one (H, W) bool mask per instance
    of the record; called only for images with predictions."""
    images = []
    for g, p in tqdm(list(zip(ground_truth.images, predictions.images)), desc=desc, disable=not progress):
        out = []
        if p.instances:
            masks = new_masks(read_image(g.path, (g.width, g.height)), p)
            out = [Instance.from_mask(m, inst.category_id, score=inst.score) for m, inst in zip(masks, p.instances)]
        images.append(ImageRecord(path=p.path, width=p.width, height=p.height, instances=out, image_id=p.image_id))
    return Dataset(images=images, categories=dict(predictions.categories))


def refine_predictions(ground_truth: Dataset, predictions: Dataset, config: RefinerConfig | None = None,
                       weights: str | Path | None = None, device: str = "auto", progress: bool = False,
                       fast: bool = True) -> Dataset:
    """The predictions refined by BPR in memory (weights None = the shipped model; config None =
    RefinerConfig's defaults; fast: the Refiner's fast path, False = plain fp32 PyTorch). For files
    of any size with shards and resume, see pipeline.refine."""
    from ..core.refiner import Refiner

    refiner = Refiner(config or RefinerConfig(), weights=weights, device=device, fast=fast)
    return replace_masks(ground_truth, predictions,
                         lambda image, rec: [r.mask for r in refiner.refine(image, rec.masks())], "refine", progress)


def grabcut_predictions(ground_truth: Dataset, predictions: Dataset, band: int = 3, progress: bool = False) -> Dataset:
    """The predictions refined by OpenCV's GrabCut (core.grabcut.grabcut_mask on every instance)."""
    from ..core.grabcut import grabcut_mask

    return replace_masks(ground_truth, predictions,
                         lambda image, rec: [grabcut_mask(image, inst.mask, band) for inst in rec.instances],
                         "grabcut", progress)


def oracle_predictions(ground_truth: Dataset, predictions: Dataset, dist: float) -> Dataset:
    """The boundary oracle: each prediction with its pixels within ``dist`` px of its boundary taken
    from its best same-category non-crowd ground truth (unchanged when there is none)."""
    from ..core.evaluate import oracle_mask

    images = []
    for g, p in zip(ground_truth.images, predictions.images):
        pred, gt = p.masks(), g.masks()
        index, _ = _match_ground_truth(p, g)
        out = []
        for inst, mask, j in zip(p.instances, pred, index):
            if j >= 0:
                mask = oracle_mask(mask, gt[j], dist)
            out.append(Instance.from_mask(np.asarray(mask), inst.category_id, score=inst.score))
        images.append(ImageRecord(path=p.path, width=p.width, height=p.height, instances=out, image_id=p.image_id))
    return Dataset(images=images, categories=dict(predictions.categories))


def simulate_predictions(ground_truth: Dataset, seed: int = 0, **options) -> Dataset:
    """Simulated coarse predictions of a ground-truth Dataset (same images and categories).

    options: ``style``, ``box_jitter``, ``grid``, ``noise``, ``threshold`` of
    :func:`bpr_studio.core.simulate.coarse_mask`. Crowd instances are skipped; image ``i`` draws
    from ``numpy.random.default_rng([seed, i])``.
    """
    from ..core.simulate import simulate_instances

    images = []
    for index, record in enumerate(ground_truth.images):
        rng = np.random.default_rng([seed, index])
        kept = [inst for inst in record.instances if not inst.iscrowd]
        masks = np.stack([inst.mask for inst in kept]) if kept else np.zeros((0, record.height, record.width), bool)
        predictions = [Instance.from_mask(coarse, kept[j].category_id, score=score)
                       for j, coarse, score in simulate_instances(masks, rng, **options)]
        images.append(ImageRecord(path=record.path, width=record.width, height=record.height,
                                  instances=predictions, image_id=record.image_id))
    return Dataset(images=images, categories=dict(ground_truth.categories))


def score_table(ground_truth: Dataset, rows: list[tuple[str, Dataset]]) -> list[dict]:
    """Score each (name, predictions); one dict per row with the metrics in percent (AP values None
    where a size range has no ground truth; "af", "miou", "area_error" (signed), "far" (boundary share
    > 5 px from the truth)), "instances" and, for rows after the first, "worse" / "better": the share
    of instances whose IoU moved by more than one point against the first row."""
    from ..core.evaluate import evaluate, share_changed

    sizes = [(r.height, r.width) for r in ground_truth.images]
    gts = [r.instances for r in ground_truth.images]
    table, base = [], None
    for name, predictions in rows:
        scores = evaluate(sizes, gts, [r.instances for r in predictions.images])
        metrics = {k: (None if k in AP_KEYS and v < 0 else 100 * v) for k, v in scores.as_dict().items()}
        row = {"name": name, **metrics, "instances": int(scores.ious.size)}
        if base is None:
            base = scores.ious
        else:
            worse, better = share_changed(base, scores.ious)
            row.update(worse=100 * worse, better=100 * better)
        table.append(row)
    return table


def training_patches(ground_truth: Dataset, predictions: Dataset, config: RefinerConfig | None = None,
                     iou_thr: float = 0.5, progress: bool = False):
    """Training :class:`~bpr_studio.core.train.PatchSet` of a dataset, sampled as the Refiner with
    ``config`` samples (patch size, NMS, minimum instance size; None = RefinerConfig's defaults)."""
    from ..core.train import PatchSet, image_patches

    config = config or RefinerConfig()
    if len(ground_truth.images) != len(predictions.images):
        raise DatasetError(f"ground truth has {len(ground_truth.images)} images but the predictions "
                           f"{len(predictions.images)}; expected the same images")
    sets = []
    for g, p in tqdm(list(zip(ground_truth.images, predictions.images)), desc="patches", disable=not progress):
        if not g.instances or not p.instances:
            continue
        image = read_image(g.path, (g.width, g.height))
        sets.append(image_patches(image, g.masks(), [i.category_id for i in g.instances],
                                  p.masks(), [i.category_id for i in p.instances], [i.iscrowd for i in g.instances],
                                  config, iou_thr))
    return PatchSet.concatenate(sets) if sets else PatchSet.empty(config.patch_size)


def write_scenes(out_dir: str | Path, count: int, seed: int = 0, progress: bool = False,
                 parts: float = 0.5, edge_coverage: float = 0.5, shadows: float = 0.0) -> Dataset:
    """Write ``count`` synthetic scenes as ``out_dir/images/NNNNNN.png``; return them as a ground-truth Dataset.

    Scene ``i`` draws from ``numpy.random.default_rng([seed, i])``, so a set is reproducible and
    sets of different seeds do not overlap. Images are written losslessly (PNG) after the scene's
    own JPEG compression, so the files hold exactly the pixels the masks were made for. parts,
    edge_coverage, shadows: see core.synth.make_scene.
    """
    import cv2

    from ..core.synth import CATEGORIES, make_scene
    from ..io.atomic import atomic_write_bytes

    images_dir = Path(out_dir) / "images"
    records = []
    for i in tqdm(range(count), desc="scenes", disable=not progress):
        image, masks, kinds = make_scene(np.random.default_rng([seed, i]), parts=parts, edge_coverage=edge_coverage,
                                         shadows=shadows)
        path = images_dir / f"{i:06d}.png"
        ok, data = cv2.imencode(".png", image[..., ::-1])
        if not ok:
            raise OSError(f"{path}: OpenCV could not encode the scene as PNG")
        atomic_write_bytes(path, data.tobytes())
        height, width = image.shape[:2]
        instances = [Instance.from_mask(m, k) for m, k in zip(masks, kinds)]
        records.append(ImageRecord(path=path, width=width, height=height, instances=instances, image_id=i + 1))
    return Dataset(images=records, categories=dict(CATEGORIES))


def corrections_from_datasets(ground_truth: Dataset, predictions: Dataset) -> list:
    """core.adapt.CorrectedImage per image: every prediction paired with its best same-class, non-crowd
    ground truth (IoU > 0.5; others are left out)."""
    from ..core.adapt import CorrectedImage

    images = []
    for g, p in zip(ground_truth.images, predictions.images):
        if not p.instances or not g.instances:
            continue
        gt, pred = g.masks(), p.masks()
        index, iou = _match_ground_truth(p, g)
        keep = np.flatnonzero(iou > 0.5)
        if len(keep):
            images.append(CorrectedImage(Path(g.path).name, lambda g=g: read_image(g.path, (g.width, g.height)),
                                         [pred[k] for k in keep], [gt[index[k]] for k in keep]))
    return images
