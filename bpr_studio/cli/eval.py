"""``bpr-studio eval``: a table of COCO mask AP, AF and mean IoU per predictions file (plus refined and oracle rows)."""

from __future__ import annotations

import argparse
import sys

from ..core.config import RefinerConfig
from . import add_min_size_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--images", default=None, help="folder the images' file names are relative to")
    parser.add_argument("--predictions", nargs="+", required=True,
                        help="COCO results JSON files; the first is the baseline the others are compared with")
    parser.add_argument("--refine", nargs="?", const="default", action="append", default=[], metavar="WEIGHTS",
                        help="add a row: the first predictions refined with BPR (the shipped model, or WEIGHTS); "
                             "repeat to compare models")
    parser.add_argument("--baseline", choices=("grabcut",), action="append", default=[],
                        help="add a row: the first predictions refined by a classical method: grabcut = OpenCV's "
                             "GrabCut initialised from each coarse mask (see --band)")
    parser.add_argument("--band", type=int, default=3,
                        help="GrabCut baseline: the coarse mask eroded / dilated by this many px is sure foreground / "
                             "background, the band between probable (default 3)")
    parser.add_argument("--oracle", type=float, action="append", default=[], choices=(1, 2, 3),
                        help="add a row: the first predictions with the pixels within DIST px of their "
                             "boundary replaced by ground truth (repeatable)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="refinement network input (default: the size the weights were trained at)")
    parser.add_argument("--nms-thr", type=float, default=0.25, help="refinement patch NMS threshold (default 0.25)")
    add_min_size_argument(parser)
    parser.add_argument("--json", default=None, help="also write the table as JSON to this file")


def _with_new_masks(ground_truth, predictions, new_masks, desc: str, progress: bool):
    """Dataset of the predictions with their masks replaced (categories and scores kept).

    new_masks(image (H, W, 3) uint8, record) -> one (H, W) bool mask per instance of the predictions'
    record; images are read from the ground truth's paths, only where there are predictions."""
    from tqdm import tqdm

    from ..io.dataset import Dataset, ImageRecord, Instance
    from ..io.images import read_image

    images = []
    for g, p in tqdm(list(zip(ground_truth.images, predictions.images)), desc=desc, disable=not progress):
        out = []
        if p.instances:
            masks = new_masks(read_image(g.path, (g.width, g.height)), p)
            out = [Instance.from_mask(m, inst.category_id, score=inst.score) for m, inst in zip(masks, p.instances)]
        images.append(ImageRecord(path=p.path, width=p.width, height=p.height, instances=out, image_id=p.image_id))
    return Dataset(images=images, categories=dict(predictions.categories))


def refine_dataset(ground_truth, predictions, weights=None, input_size: int | None = None, nms_thr: float = 0.25,
                   progress: bool = True, min_size: int = RefinerConfig.min_size):
    """Dataset of the predictions refined by BPR (categories and scores kept); input_size None = the
    size the weights were trained at; min_size: see RefinerConfig."""
    from ..core.refiner import Refiner

    config = RefinerConfig(input_size=input_size, nms_thr=nms_thr, min_size=min_size)
    refiner = Refiner(config, weights=weights, device="auto")
    return _with_new_masks(ground_truth, predictions,
                           lambda image, rec: [r.mask for r in refiner.refine(image, rec.masks())], "refine", progress)


def grabcut_dataset(ground_truth, predictions, band: int = 3, progress: bool = True):
    """Dataset of the predictions refined by OpenCV's GrabCut (core.grabcut.grabcut_mask; every
    instance, categories and scores kept)."""
    from ..core.grabcut import grabcut_mask

    return _with_new_masks(ground_truth, predictions,
                           lambda image, rec: [grabcut_mask(image, inst.mask, band) for inst in rec.instances],
                           "grabcut", progress)


AP_KEYS = ("ap", "ap50", "ap75", "ap_s", "ap_m", "ap_l")


def score_table(ground_truth, rows: list[tuple[str, object]]) -> list[dict]:
    """Score each (name, predictions Dataset); returns one dict per row with the metrics in percent
    (AP values None where a size range has no ground truth; AF, mIoU, signed area error, far boundary
    share) and, for rows after the first, the share of instances worse / better by more than one
    IoU point than in the first row."""
    from ..core.evaluate import evaluate, share_changed

    sizes = [(r.height, r.width) for r in ground_truth.images]
    gts = [r.instances for r in ground_truth.images]
    table, base = [], None
    for name, predictions in rows:
        scores = evaluate(sizes, gts, [r.instances for r in predictions.images])
        metrics = {k: (None if k in AP_KEYS and v < 0 else 100 * v) for k, v in scores.as_dict().items()}
        row = {"name": name, **metrics, "instances": int(scores.ious.size)}
        if base is None:
            base = scores.ious
        else:
            worse, better = share_changed(base, scores.ious)
            row.update(worse=100 * worse, better=100 * better)
        table.append(row)
    return table


def format_table(table: list[dict]) -> str:
    """The table as aligned text; columns in percent; 'gain/oracle' = share of the oracle's gain over
    the first row (AP and AF) that each row achieves, when an oracle row is present (the 2-px one
    if there is one)."""
    oracles = [r for r in table if r["name"].startswith("oracle")]
    oracle = next((r for r in oracles if r["name"].startswith("oracle 2px")), oracles[0] if oracles else None)
    head = ["predictions", "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AF", "mIoU", "area err", "far>5px",
            "worse>1pt", "better>1pt"]
    if oracle is not None:
        which = oracle["name"].split()[1]
        head += [f"AP gain/oracle {which}", f"AF gain/oracle {which}"]
    lines = [head]
    base = table[0]
    for r in table:
        cells = [r["name"]] + [("-" if r[k] is None else f"{r[k]:.1f}")
                               for k in AP_KEYS + ("af", "miou")]
        cells += [f"{r['area_error']:+.1f}", f"{r['far']:.1f}"]
        cells += [f"{r[k]:.1f}" if k in r else "" for k in ("worse", "better")]
        if oracle is not None:
            for k in ("ap", "af"):
                gap = oracle[k] - base[k]
                cells.append(f"{100 * (r[k] - base[k]) / gap:.0f}%" if r is not base and abs(gap) > 1e-9 else "")
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in lines)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..io.atomic import atomic_write_json, check_output_path
    from ..io.coco import read_coco, read_coco_results
    from .oracle import oracle_dataset

    if args.json:
        check_output_path(args.json)
    ground_truth = read_coco(args.annotations, args.images)
    rows = [(Path(p).name, read_coco_results(p, ground_truth)) for p in args.predictions]
    first_name, first = rows[0]
    for refine in args.refine:
        weights = None if refine == "default" else refine
        label = "shipped model" if weights is None else Path(weights).name
        rows.append((f"{first_name} + BPR ({label})",
                     refine_dataset(ground_truth, first, weights, args.input_size, args.nms_thr,
                                    min_size=args.min_size)))
    for method in args.baseline:
        rows.append((f"{first_name} + {method} (band {args.band}px)",
                     grabcut_dataset(ground_truth, first, args.band)))
    for dist in args.oracle:
        rows.append((f"oracle {dist:g}px of {first_name}", oracle_dataset(ground_truth, first, dist)))
    table = score_table(ground_truth, rows)
    n = table[0]["instances"]
    print(f"{args.annotations}: {len(ground_truth.images)} images, {n} ground-truth instances "
          f"(AP: COCO mask AP; AF: boundary F-score, 1 px, over IoU 0.50:0.95; mIoU: best IoU per instance; "
          f"area err: mean signed area error of the best pairs, + = too large; far>5px: share of predicted "
          f"boundary pixels more than 5 px from the true boundary; worse/better: share of instances whose IoU "
          f"moved > 1 point vs the first row; all in %)")
    print(format_table(table))
    if args.json:
        atomic_write_json(args.json, table, indent=1)
    sys.stdout.flush()
    return 0
