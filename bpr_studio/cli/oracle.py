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


def run(args: argparse.Namespace) -> int:
    from ..io.coco import read_coco, read_coco_results, write_coco_results
    from ..pipeline.datasets import oracle_predictions

    ground_truth = read_coco(args.annotations, args.images)
    predictions = read_coco_results(args.predictions, ground_truth)
    write_coco_results(oracle_predictions(ground_truth, predictions, args.dist), args.out)
    print(f"wrote the {args.dist:g}-px boundary oracle of {args.predictions} to {args.out}")
    return 0
