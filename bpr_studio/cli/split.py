"""``bpr-studio split``: split a COCO annotation file by image into training and validation files."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--train-out", required=True, help="COCO JSON of the training images to write")
    parser.add_argument("--val-out", required=True, help="COCO JSON of the validation images to write")
    parser.add_argument("--fraction", type=float, default=0.2,
                        help="share of images for validation (default 0.2); an image's side depends on its "
                             "file name only (MD5), so the split is stable")
    parser.add_argument("--salt", default="", help="text mixed into the hash, for another split of the same set")


def run(args: argparse.Namespace) -> int:
    from ..io.atomic import atomic_write_json
    from ..io.split import split_coco

    train, val = split_coco(args.annotations, args.fraction, args.salt)
    atomic_write_json(args.train_out, train)
    atomic_write_json(args.val_out, val)
    for name, part, out in (("training", train, args.train_out), ("validation", val, args.val_out)):
        print(f"{name}: {len(part['images'])} images, {len(part['annotations'])} annotations -> {out}")
    return 0
