"""``bpr-studio eval``: a table of COCO mask AP, AF and mean IoU per predictions file (plus refined and oracle rows)."""

from __future__ import annotations

import argparse
import sys

from ..core.config import weights_path
from . import add_refiner_arguments, refiner_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--images", default=None, help="folder the images' file names are relative to")
    parser.add_argument("--predictions", nargs="+", action="extend", required=True,
                        help="COCO results JSON files (several after one flag, or the flag repeated); the first "
                             "is the baseline the others are compared with")
    parser.add_argument("--refine", nargs="?", const="default", action="append", default=[], metavar="WEIGHTS",
                        help="add a row: the first predictions refined with BPR (the shipped model, or WEIGHTS: a file, or "
                             "a shipped one by name, fast|precise|paper); "
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
    add_refiner_arguments(parser)
    parser.add_argument("--json", default=None, help="also write the table as JSON to this file")


def format_table(table: list[dict]) -> str:
    """The table as aligned text; columns in percent; 'gain/oracle' = share of the oracle's gain over
    the first row (AP and AF) that each row achieves, when an oracle row (one with an ``oracle``
    key, its distance in px) is present: the 2-px one if there is one."""
    from ..pipeline.datasets import AP_KEYS

    oracles = [r for r in table if "oracle" in r]
    oracle = next((r for r in oracles if r["oracle"] == 2), oracles[0] if oracles else None)
    head = ["predictions", "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AF", "mIoU", "area err", "far>5px",
            "worse>1pt", "better>1pt"]
    if oracle is not None:
        which = f"{oracle['oracle']:g}px"
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
    from ..pipeline.datasets import grabcut_predictions, oracle_predictions, refine_predictions, score_table

    if args.json:
        check_output_path(args.json)
    ground_truth = read_coco(args.annotations, args.images)
    rows = [(Path(p).name, read_coco_results(p, ground_truth)) for p in args.predictions]
    first_name, first = rows[0]
    for refine in args.refine:
        weights = None if refine == "default" else weights_path(refine)
        label = "shipped model" if weights is None else Path(weights).name
        rows.append((f"{first_name} + BPR ({label})",
                     refine_predictions(ground_truth, first, refiner_config(args), weights, progress=True)))
    for method in args.baseline:
        rows.append((f"{first_name} + {method} (band {args.band}px)",
                     grabcut_predictions(ground_truth, first, args.band, progress=True)))
    for dist in args.oracle:
        rows.append((f"oracle {dist:g}px of {first_name}", oracle_predictions(ground_truth, first, dist)))
    table = score_table(ground_truth, rows)
    for row, dist in zip(table[len(table) - len(args.oracle):], args.oracle):
        row["oracle"] = dist
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
