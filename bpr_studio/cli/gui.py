"""``bpr-studio gui``: open the BPR Studio window on a dataset (or the demo), or save a screenshot of it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.formats import FORMATS
from . import add_weights_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", type=Path,
                        help="dataset folder or file (COCO JSON, labelme folder, Cityscapes root); default: the demo")
    parser.add_argument("--annotations", type=Path, help="COCO annotations when PATH is the images folder")
    parser.add_argument("--predictions", type=Path,
                        help="predictions to review (COCO results JSON or Cityscapes results folder); "
                             "the dataset's annotations then serve as ground truth")
    parser.add_argument("--format", choices=FORMATS, help="dataset format (default: guessed)")
    parser.add_argument("--session", type=Path, help="session file (default: beside the dataset)")
    add_weights_argument(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--screenshot", type=Path, metavar="OUT.png",
                        help="open the window offscreen, save a PNG of it and exit")
    parser.add_argument("--refine", action="store_true", help="with --screenshot: refine the first image first")
    parser.add_argument("--size", default="1400x900", help="window size for --screenshot, WxH (default 1400x900)")


def run(args: argparse.Namespace) -> int:
    from ..gui.app import run_gui

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bpr-studio gui: --size must look like 1400x900, got {args.size!r}")
    return run_gui(args.path, annotations=args.annotations, predictions=args.predictions, format=args.format,
                   session=args.session, weights=args.weights, device=args.device,
                   screenshot=args.screenshot, refine=args.refine, size=(width, height))
