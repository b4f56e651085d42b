"""``bpr-studio inspect``: per-instance quality report (CSV, IoU scatter, galleries of the worst instances).

Example::

    bpr-studio inspect --images data/val --annotations gt.json --predictions maskrcnn.json \\
        --out report/                      # refines the predictions with the default weights
    bpr-studio inspect ... --refined refined.json --out report/   # compares with a refinement done before

Writes ``REPORT_DIR/quality.csv`` (one row per predicted instance), ``REPORT_DIR/scatter.png``
(IoU before against after) and ``REPORT_DIR/gallery_NN_<image>_<instance>.png`` for the N worst
instances (largest IoU loss first).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from . import add_refiner_arguments, add_weights_argument, refiner_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, type=Path, help="folder of the images")
    parser.add_argument("--annotations", required=True, type=Path, help="ground truth, COCO instances JSON")
    parser.add_argument("--predictions", required=True, type=Path, help="coarse masks, COCO results JSON")
    parser.add_argument("--refined", type=Path,
                        help="refined masks, COCO results JSON with the same instances in the same order per "
                             "image (default: refine the predictions now)")
    parser.add_argument("--out", required=True, type=Path, help="report folder (created)")
    add_weights_argument(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    add_refiner_arguments(parser, ("patch_size", "nms_thr", "min_size", "attached_only", "margin", "mirror",
                                   "max_shift", "snap"))
    parser.add_argument("--worst", type=int, default=10, help="galleries of this many worst instances (default: 10)")
    parser.add_argument("--max-patches", type=int, default=8,
                        help="rows per gallery, the worst patches first (default: 8)")


def run(args: argparse.Namespace) -> int:
    from ..io.atomic import check_output_path
    from ..io.coco import read_coco, read_coco_results
    from ..io.errors import DatasetError
    from ..core.figures import scatter_figure
    from ..io.report import write_figure_png, write_quality_csv

    if args.worst < 0 or args.max_patches < 1:
        raise DatasetError(f"--worst must be >= 0 and --max-patches >= 1, got {args.worst} and {args.max_patches}")
    check_output_path(args.out, folder=True)
    config = refiner_config(args)
    truth = read_coco(args.annotations, args.images)
    predictions = read_coco_results(args.predictions, truth)
    refined = read_coco_results(args.refined, truth) if args.refined is not None else None
    refiner = None
    if refined is None:
        from ..core.refiner import Refiner

        refiner = Refiner(config, weights=args.weights, device=args.device)
        print(f"refining with {refiner.weights_path} on {refiner.device_name}")

    records, worst = _measure_dataset(truth, predictions, refined, refiner, config, args)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = write_quality_csv(args.out / "quality.csv", records, truth.categories)
    scatter_path = write_figure_png(args.out / "scatter.png", scatter_figure(records))
    galleries = [_write_gallery(args.out, rank + 1, cand, args.max_patches, truth.categories)
                 for rank, cand in enumerate(worst)]
    _print_summary(records)
    print(f"wrote {csv_path}, {scatter_path} and {len(galleries)} galleries in {args.out}")
    return 0


@dataclass
class _Candidate:
    """What a gallery needs of one instance: its record (core.quality.InstanceQuality), image path,
    masks (H, W) bool (gt None when unmatched), boxes (K, 4) and probs (K, P, P) or None."""

    record: object
    path: Path
    coarse: object
    refined: object
    boxes: object
    probs: object
    gt: object


def _measure_dataset(truth, predictions, refined, refiner, config, args):
    """Records of every instance, and the data of the ``args.worst`` worst (worst_change order)."""
    import numpy as np
    from tqdm import tqdm

    from ..core.patches import boundary_patches
    from ..core.quality import measure_image, worst_change_key
    from ..io.errors import DatasetError
    from ..io.images import read_image

    records, worst = [], []
    for i, (gt_image, pred_image) in enumerate(tqdm(list(zip(truth.images, predictions.images)), desc="inspect",
                                                    unit="image")):
        coarse = list(pred_image.masks())
        categories = [inst.category_id for inst in pred_image.instances]
        if refined is not None:
            ref_image = refined.images[i]
            if len(ref_image.instances) != len(coarse):
                raise DatasetError(
                    f"{args.refined}: image {gt_image.path.name} has {len(ref_image.instances)} refined instances, "
                    f"expected {len(coarse)} (one per prediction in {args.predictions.name}, in the same order)")
            refined_masks = list(ref_image.masks())
            # patches of a refinement made elsewhere are unknown: every boundary patch is measured
            boxes = [boundary_patches(m, config.patch_size, config.nms_thr) for m in coarse]
            probs = [None] * len(coarse)
        elif coarse:
            results = refiner.refine(read_image(gt_image.path, (gt_image.width, gt_image.height)), np.stack(coarse))
            refined_masks = [r.mask for r in results]
            boxes = [r.boxes for r in results]
            probs = [r.probs for r in results]
        else:
            refined_masks, boxes, probs = [], [], []
        gt_masks = [inst.mask for inst in gt_image.instances]
        found = measure_image(
            coarse, categories, refined_masks, boxes, probs,
            gt_masks, [inst.category_id for inst in gt_image.instances], [inst.iscrowd for inst in gt_image.instances],
            image_index=i, image_name=gt_image.path.name,
        )
        records.extend(found)
        if args.worst:
            worst.extend(_Candidate(q, gt_image.path, coarse[j], refined_masks[j], boxes[j], probs[j],
                                    gt_masks[q.gt_index] if q.gt_index is not None else None)
                         for j, q in enumerate(found))
            worst = sorted(worst, key=lambda c: worst_change_key(c.record))[:args.worst]
    return records, worst


def _write_gallery(out: Path, rank: int, cand: _Candidate, max_patches: int, categories: dict) -> Path:
    from ..core.quality import measure_patches, worst_patches_first
    from ..io.images import read_image
    from ..core.figures import gallery_figure, patch_rows
    from ..io.report import write_figure_png

    q = cand.record
    patches = worst_patches_first(measure_patches(cand.coarse, cand.refined, cand.boxes, cand.probs, cand.gt))
    image = read_image(cand.path, cand.coarse.shape[::-1])
    rows = patch_rows(image, cand.coarse, cand.refined, patches[:max_patches], cand.probs, cand.gt)
    title = f"#{rank} {cand.path.name}, instance {q.instance_index} ({categories.get(q.category_id, q.category_id)})"
    if q.iou_change is not None:
        title += f": IoU {q.iou_before:.3f} \u2192 {q.iou_after:.3f}"
    return write_figure_png(out / f"gallery_{rank:02d}_{cand.path.stem}_{q.instance_index}.png",
                            gallery_figure(rows, title))


def _print_summary(records) -> None:
    from ..core.quality import got_worse

    measured = [q for q in records if q.iou_change is not None]
    if not measured:
        print(f"{len(records)} instances, none matched to ground truth")
        return
    n = len(measured)
    worse = sum(1 for q in measured if got_worse(q))
    means = {name: sum(getattr(q, name) for q in measured) / n
             for name in ("iou_before", "iou_after", "bf_before", "bf_after")}
    print(f"{len(records)} instances, {n} with IoU before and after:")
    print(f"  mean IoU        {means['iou_before']:.4f} -> {means['iou_after']:.4f}")
    print(f"  mean boundary F {means['bf_before']:.4f} -> {means['bf_after']:.4f}")
    print(f"  got worse: {worse} ({100 * worse / n:.1f} %)")
