"""``bpr-studio synth``: a synthetic COCO dataset (images, exact masks, simulated coarse predictions)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write images/, annotations.json, predictions.json")
    parser.add_argument("--images", type=int, required=True, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="scene seed: scene i uses [seed, i] (default 0)")
    parser.add_argument("--parts", type=float, default=0.5,
                        help="probability that an object gets inner parts of another appearance "
                             "(default 0.5; 0 reproduces sets made before this option)")
    parser.add_argument("--edge-coverage", type=float, default=0.5,
                        help="share of an anti-aliased edge pixel an object must cover to own it in the ground "
                             "truth, in [0.5, 1) (default 0.5; higher leaves mixed edge pixels out of every mask)")
    parser.add_argument("--shadows", type=float, default=0.0,
                        help="probability that an object casts a soft shadow onto what lies behind it, which "
                             "belongs to no mask (default 0: sets made before this option)")
    parser.add_argument("--prediction-seed", type=int, default=0,
                        help="seed of the simulated predictions (default 0; see bpr-studio simulate)")


def run(args: argparse.Namespace) -> int:
    from ..io.coco import write_coco, write_coco_results
    from ..pipeline.datasets import simulate_predictions, write_scenes

    if args.images < 1:
        raise ValueError(f"--images must be at least 1, got {args.images}")
    out = Path(args.out)
    for name, value in (("--parts", args.parts), ("--shadows", args.shadows)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    if not 0.5 <= args.edge_coverage < 1.0:
        raise ValueError(f"--edge-coverage must be in [0.5, 1), got {args.edge_coverage}")
    ground_truth = write_scenes(out, args.images, args.seed, progress=True, parts=args.parts,
                                edge_coverage=args.edge_coverage, shadows=args.shadows)
    write_coco(ground_truth, out / "annotations.json")
    write_coco_results(simulate_predictions(ground_truth, args.prediction_seed), out / "predictions.json")
    count = sum(len(r.instances) for r in ground_truth.images)
    print(f"wrote {args.images} images with {count} instances to {out} "
          f"(annotations.json, predictions.json: simulated Mask R-CNN masks, seed {args.prediction_seed})")
    return 0
