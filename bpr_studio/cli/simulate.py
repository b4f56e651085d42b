"""``bpr-studio simulate``: Mask R-CNN-like coarse predictions (a COCO results file) from COCO ground truth."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--images", default=None, help="folder the images' file names are relative to "
                        "(default: the annotation file's folder)")
    parser.add_argument("--out", required=True, help="COCO results JSON to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (image i uses [seed, i]; default 0)")
    parser.add_argument("--style", choices=("maskrcnn", "quarter", "contour"), default="maskrcnn",
                        help="maskrcnn: 28x28 mask in a jittered box; quarter: 1/4-resolution mask; contour: the "
                             "boundary moved locally in and out by a smooth field (default maskrcnn)")
    parser.add_argument("--box-jitter", type=float, default=0.05,
                        help="std of each box side's shift, as a fraction of the box size (default 0.05)")
    parser.add_argument("--grid", type=int, default=28, help="Mask R-CNN mask grid side (default 28)")
    parser.add_argument("--noise", type=float, default=0.0,
                        help="std of smooth noise added to the low-resolution probabilities (default 0)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="threshold of the resampled probabilities (maskrcnn, quarter; default 0.5): lower grows "
                             "the masks, higher shrinks them")


def run(args: argparse.Namespace) -> int:
    from ..io.coco import read_coco, write_coco_results
    from ..pipeline.datasets import simulate_predictions

    ground_truth = read_coco(args.annotations, args.images)
    predictions = simulate_predictions(ground_truth, args.seed, style=args.style, box_jitter=args.box_jitter,
                                   grid=args.grid, noise=args.noise, threshold=args.threshold)
    write_coco_results(predictions, args.out)
    count = sum(len(r.instances) for r in predictions.images)
    print(f"wrote {count} simulated {args.style} predictions for {len(predictions.images)} images to {args.out}")
    return 0
