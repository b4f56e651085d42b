"""``bpr-studio refine``: refine every instance of a COCO results file and write the refined results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import add_min_size_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, required=True, help="folder of the images")
    parser.add_argument("--predictions", type=Path, required=True,
                        help="COCO results JSON: a list of {image_id, category_id, segmentation (RLE), score}")
    parser.add_argument("--annotations", type=Path,
                        help="COCO annotations JSON that lists the images (image_id -> file_name); "
                             "without it, images are matched by file name as docs/formats.md says")
    parser.add_argument("--out", type=Path, required=True, help="refined COCO results JSON to write")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped HRNetV2-W18-Small)")
    parser.add_argument("--nms-thr", type=float, default=0.25, help="patch NMS IoU threshold (default 0.25)")
    parser.add_argument("--patch-size", type=int, default=64, help="patch side in image pixels (default 64)")
    parser.add_argument("--padding", type=int, default=0, help="context around each patch in pixels (default 0)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="network input side in pixels (default: the size the weights were trained at, "
                             "128 for the shipped model)")
    add_min_size_argument(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="patches per forward pass (default 32)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.config import RefinerConfig
    from ..core.refiner import Refiner
    from ..io.coco import images_from_folder, read_coco, read_coco_results, write_coco_results
    from ..io.dataset import Dataset, ImageRecord, Instance
    from ..io.errors import DatasetError
    from ..io.images import read_image

    config = RefinerConfig(patch_size=args.patch_size, padding=args.padding, input_size=args.input_size,
                           nms_thr=args.nms_thr, batch_size=args.batch_size, min_size=args.min_size)
    problems: list[tuple[Path, str]] = []  # (file, message) of every image or entry left unrefined
    if args.annotations:
        image_table = read_coco(args.annotations, args.images, errors=problems)
    else:
        image_table = images_from_folder(args.images, errors=problems)
    predictions = read_coco_results(args.predictions, image_table, errors=problems)
    refiner = Refiner(config, weights=args.weights, device=args.device)
    print(f"refining on {refiner.device_name} with {refiner.weights_path}", file=sys.stderr)

    out_images = []
    todo = [rec for rec in predictions.images if rec.instances]
    with tqdm(total=sum(len(rec.instances) for rec in todo), unit="inst", desc="refine") as bar:
        for rec in todo:
            try:
                image = read_image(rec.path, expected_size=(rec.width, rec.height))
            except DatasetError as exc:
                problems.append((rec.path, f"{exc} (its coarse masks were written unchanged)"))
                out_images.append(rec)
                bar.update(len(rec.instances))
                continue
            refined = refiner.refine(image, rec.masks(), on_instance=lambda r: bar.update(1))
            instances = [Instance.from_mask(r.mask, inst.category_id, score=inst.score, iscrowd=inst.iscrowd,
                                            source_id=inst.source_id, attributes=dict(inst.attributes))
                         for r, inst in zip(refined, rec.instances)]
            out_images.append(ImageRecord(rec.path, rec.width, rec.height, instances, rec.image_id))
    write_coco_results(Dataset(out_images, predictions.categories), args.out)
    n_written = sum(len(rec.instances) for rec in out_images)
    print(f"wrote {n_written} instances of {len(out_images)} images to {args.out}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for _, message in problems:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0
