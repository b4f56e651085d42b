"""``bpr-studio train``: train a refinement network on patches from ground truth + coarse predictions."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..core.config import DEFAULT_MODEL, MODELS, TrainConfig, weights_path
from . import add_refiner_arguments, refiner_config


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
    families = "; ".join(f"{name}: {spec.description}, input {spec.input_size}" for name, spec in MODELS.items())
    parser.add_argument("--model", choices=tuple(MODELS), default=DEFAULT_MODEL,
                        help=f"network (default {DEFAULT_MODEL}). {families}")
    parser.add_argument("--input-size", type=int, default=None,
                        help="network input side (default: the model's, as listed under --model)")
    add_refiner_arguments(parser, ("patch_size", "nms_thr", "min_size"))
    parser.add_argument("--iters", type=int, default=TrainConfig.iters,
                        help=f"iterations (default {TrainConfig.iters}; 0 only extracts patches, for --save-patches)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="time budget: stop after this many minutes; the learning-rate schedule "
                             "follows whichever of iterations and time is further along")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                        help=f"patches per iteration (default {TrainConfig.batch_size})")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr,
                        help=f"initial learning rate (default {TrainConfig.lr})")
    parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay,
                        help=f"SGD weight decay (default {TrainConfig.weight_decay:g})")
    parser.add_argument("--boundary-weight", type=float, default=TrainConfig.boundary_weight,
                        help="loss weight of the pixels along exact target boundaries (patches without an "
                             f"ignore band; default {TrainConfig.boundary_weight:g} = plain cross-entropy)")
    parser.add_argument("--mask-jitter", type=float, default=TrainConfig.mask_jitter,
                        help="share of the coarse mask patches dilated or eroded in augmentation, so the "
                             "network does not trust the coarse boundary to the pixel (default 0: none)")
    parser.add_argument("--mask-jitter-px", type=int, default=TrainConfig.mask_jitter_px,
                        help="largest dilation or erosion of --mask-jitter, in px; each jittered patch draws "
                             f"1 to this many (default {TrainConfig.mask_jitter_px})")
    parser.add_argument("--teacher", default=None,
                        help="weights file (or fast|precise|paper) of a trained network whose probabilities "
                             "the run also learns from, at the teacher's own input size (distillation)")
    parser.add_argument("--distill", type=float, default=TrainConfig.distill,
                        help=f"share of the loss that follows --teacher (default {TrainConfig.distill:g}; the "
                             "rest is the cross-entropy against the ground truth)")
    parser.add_argument("--int8-share", type=float, default=TrainConfig.int8_share,
                        help="share of each step's loss from a pass with the int8 graph's rounding emulated, so the "
                             "fast CPU path learns too (default 0: none; 1: that pass alone). For fine-tuning "
                             "trained weights, e.g. --init fast --teacher fast --distill 1")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto",
                        help="where the network trains: auto (CUDA if available, else CPU), cpu, cuda, cuda:N")
    parser.add_argument("--bf16", action="store_true",
                        help="forward pass and loss under bfloat16 autocast (for a GPU; weights stay float32)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that build batches ahead of the network (default: 0 on the CPU; on a "
                             "GPU one per CPU core but one, at most 8, as one core cannot keep a GPU busy)")
    parser.add_argument("--checkpoint-minutes", type=float, default=TrainConfig.checkpoint_seconds / 60,
                        help=f"minutes between checkpoints (default {TrainConfig.checkpoint_seconds / 60:g})")
    parser.add_argument("--resume", default=None, help="checkpoint (OUT.ckpt) to continue from")
    parser.add_argument("--init", default=None,
                        help="weights file (or fast|precise|paper) to start from, e.g. the shipped model (a fresh "
                             "schedule, unlike --resume)")
    parser.add_argument("--log", default=None, help="append progress lines to this file")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed,
                        help="data order, held-out patches, augmentation and initialisation")
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


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core.refiner import pick_device
    from ..core.train import PatchSet, load_teacher, train
    from ..io.atomic import check_output_path

    for path in (args.out, f"{args.out}.ckpt", args.save_patches, args.log):
        if path:
            check_output_path(path)
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    device = pick_device(args.device)  # a device that is not there fails before minutes of patch extraction
    teacher = str(weights_path(args.teacher)) if args.teacher else None
    if teacher:  # so does a teacher that cannot be used
        load_teacher(teacher, torch.device("cpu"))
    workers = args.workers
    if workers is None:
        workers = 0 if device.type == "cpu" else max(min(8, (os.cpu_count() or 1) - 1), 0)
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

    sets = [PatchSet.load_all(args.patches)] if args.patches else []
    triples = _pairs(args)
    if triples:
        from ..io.coco import read_coco, read_coco_results
        from ..pipeline.datasets import training_patches

        for images, gt_file, predictions in triples:
            ground_truth = read_coco(gt_file, images)
            coarse = read_coco_results(predictions, ground_truth)
            found = training_patches(ground_truth, coarse, refiner_config(args), progress=not args.quiet)
            sets.append(found.with_band(args.boundary_band))
            log(f"{gt_file} + {predictions}: {len(sets[-1])} patches (ignore band {args.boundary_band} px)")
    if not sets:
        print("bpr-studio train: error: no data; give --annotations and --predictions, or --patches", file=sys.stderr)
        return 2
    patches = sets[0] if len(sets) == 1 else PatchSet.concatenate(sets)
    del sets  # the pieces: held beside the whole for the run, they doubled the memory training needs
    if args.save_patches:
        patches.save(args.save_patches)
        log(f"saved {len(patches)} patches to {args.save_patches}")
    if args.iters == 0:  # only extracting patches
        return 0
    config = TrainConfig(model=args.model, input_size=args.input_size, iters=args.iters,
                         max_seconds=args.minutes * 60 if args.minutes else None, batch_size=args.batch_size,
                         lr=args.lr, weight_decay=args.weight_decay, threads=args.threads,
                         checkpoint_seconds=args.checkpoint_minutes * 60,
                         seed=args.seed, boundary_weight=args.boundary_weight, mask_jitter=args.mask_jitter,
                         mask_jitter_px=args.mask_jitter_px, device=str(device), workers=workers, bf16=args.bf16,
                         teacher=teacher, distill=args.distill, int8_share=args.int8_share)
    log(f"training {args.model} on {len(patches)} patches: {config}")
    start = time.monotonic()
    losses = train(patches, args.out, config, resume=args.resume, progress=not args.quiet, log=log,
                   init=str(weights_path(args.init)) if args.init else None)
    seconds = time.monotonic() - start
    rate = len(losses) * args.batch_size / max(seconds, 1e-9)
    print(f"trained {len(losses)} iterations in {seconds / 60:.1f} min ({rate:.1f} patches/s); "
          f"weights: {args.out}, checkpoint: {args.out}.ckpt")
    return 0
