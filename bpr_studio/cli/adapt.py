"""``bpr-studio adapt``: fine-tune the refiner on corrected masks, kept only when it beats the base weights on held-out ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_weights_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", default=None, help="folder the images' file names are relative to "
                        "(default: the annotations file's folder)")
    parser.add_argument("--annotations", help="COCO file with the corrected masks (ground truth, or a window export)")
    parser.add_argument("--predictions", help="COCO results with the matching coarse masks")
    parser.add_argument("--session", type=Path,
                        help="a saved session (NAME.bprsession) instead: its accepted and touched-up instances")
    parser.add_argument("--out", required=True, type=Path, help="adapted weights to write (only when they are kept)")
    add_weights_argument(parser, "base weights")
    parser.add_argument("--minutes", type=float, default=3.0, help="training time budget (default 3)")
    parser.add_argument("--device", default="auto", help="where the guard refines: auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads for training (default: torch's)")
    parser.add_argument("--simulated", type=int, default=2,
                        help="simulated coarse masks per corrected instance, for more pairs (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="held-out split, patch order, simulation (default 0)")


def run(args: argparse.Namespace) -> int:
    from ..core.adapt import adapt_weights
    from ..io.coco import read_coco, read_coco_results
    from ..pipeline.datasets import corrections_from_datasets

    if args.session is not None:
        if args.annotations or args.predictions:
            raise ValueError("give either --session or --annotations with --predictions, not both")
        from ..session.adapt import corrected_images, reopen_session

        session = reopen_session(args.session)
        images = corrected_images(session)
        session.close()
        source = str(args.session)
    else:
        if not (args.annotations and args.predictions):
            raise ValueError("give --annotations (corrected masks) and --predictions (coarse masks), or --session")
        ground_truth = read_coco(args.annotations, args.images)
        images = corrections_from_datasets(ground_truth, read_coco_results(args.predictions, ground_truth))
        source = f"{args.annotations} + {args.predictions}"
    count = sum(len(image) for image in images)
    print(f"{source}: {count} corrected instance(s) on {len(images)} image(s)")
    result = adapt_weights(images, args.out, args.weights, minutes=args.minutes, device=args.device,
                           threads=args.threads, simulated=args.simulated, seed=args.seed, log=print)
    print(f"base weights:    boundary F {100 * result.before['boundary_f']:.1f}, IoU {100 * result.before['iou']:.1f}")
    print(f"adapted weights: boundary F {100 * result.after['boundary_f']:.1f}, IoU {100 * result.after['iou']:.1f}")
    print(f"wrote {args.out}" if result.kept else f"kept the base weights; nothing written to {args.out}")
    return 0
