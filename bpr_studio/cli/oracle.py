"""``bpr-studio oracle``: predictions with the pixels near their boundary replaced by ground truth (upper bound)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--images", default=None, help="folder the images' file names are relative to")
    parser.add_argument("--predictions", required=True, help="COCO results JSON")
    parser.add_argument("--dist", type=float, choices=(1, 2, 3), default=2,
                        help="pixels within this distance of the predicted boundary take the ground truth (default 2)")
    parser.add_argument("--out", required=True, help="COCO results JSON to write")


def oracle_dataset(ground_truth, predictions, dist: float):
    """Dataset of oracle predictions: each prediction with its pixels within ``dist`` of its boundary
    taken from its best same-category non-crowd ground truth (unchanged when there is none).
    Scores and categories are kept."""
    import numpy as np

    from ..core.evaluate import oracle_mask
    from ..core.train import match_ground_truth
    from ..io.dataset import Dataset, ImageRecord, Instance

    images = []
    for g, p in zip(ground_truth.images, predictions.images):
        pred = p.masks()
        gt = g.masks()
        index, _ = match_ground_truth(pred, [i.category_id for i in p.instances], gt,
                                      [i.category_id for i in g.instances], [i.iscrowd for i in g.instances])
        out = []
        for inst, mask, j in zip(p.instances, pred, index):
            if j >= 0:
                mask = oracle_mask(mask, gt[j], dist)
            out.append(Instance.from_mask(np.asarray(mask), inst.category_id, score=inst.score))
        images.append(ImageRecord(path=p.path, width=p.width, height=p.height, instances=out, image_id=p.image_id))
    return Dataset(images=images, categories=dict(predictions.categories))


def run(args: argparse.Namespace) -> int:
    from ..io.coco import read_coco, read_coco_results, write_coco_results

    ground_truth = read_coco(args.annotations, args.images)
    predictions = read_coco_results(args.predictions, ground_truth)
    write_coco_results(oracle_dataset(ground_truth, predictions, args.dist), args.out)
    print(f"wrote the {args.dist:g}-px boundary oracle of {args.predictions} to {args.out}")
    return 0
