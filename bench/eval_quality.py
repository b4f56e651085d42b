"""Refinement quality on the three evaluation sets, mean over simulator seeds: the table of README's
"How much it helps today".

Run from the repository root (needs ../shared/data; writes nothing there)::

    python bench/eval_quality.py --weights bpr_studio/resources/weights/bpr_lite0_64.pt \
        --weights bpr_studio/resources/weights/bpr_hr18s_128.pt --out work_runs/quality.json

Sets (coarse masks from ``--style``, Mask R-CNN-like by default): the labelme VOC photographs
(12 instances), grabcut50 (50 photographs, pixel-accurate masks) and
the validation split of coco_mval (``bpr-studio split`` with its defaults: 132 photographs, 145
instances; never trained on), each with simulator seeds 0..N-1. Rows: coarse, each ``--weights`` (default settings of the Refiner), the GrabCut
baseline (band 3 px), the 2-px boundary oracle. Each figure is the mean over the seeds; "gain/oracle"
is computed from those means; worse/better are pooled over all instance predictions.

grabcut50's masks leave out a 1-2 px "uncertain" band along the boundary (its README).
``--grabcut-band-fg`` adds the set "grabcut50 band-fg": the same coarse and refined masks scored
against the masks with that band counted as foreground (its oracle row uses those masks), to see how
much a figure depends on where the band is counted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from bpr_studio.core.config import RefinerConfig, weights_path
from bpr_studio.io.coco import read_coco
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
from bpr_studio.io.split import split_coco
from bpr_studio.pipeline.datasets import (grabcut_predictions, oracle_predictions, refine_predictions,
                                          score_table, simulate_predictions)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
METRICS = ("ap", "af", "miou", "area_error", "far")


def evaluation_sets(seeds: dict[str, int]) -> dict[str, tuple]:
    """{name: (ground-truth Dataset, number of seeds)} of the sets that exist."""
    sets = {}
    voc = DATA / "labelme_voc" / "data_dataset_coco" / "annotations.json"
    if voc.is_file():
        sets["VOC"] = (read_coco(voc), seeds["VOC"])
    grabcut = DATA / "grabcut50" / "annotations.json"
    if grabcut.is_file():
        sets["grabcut50"] = (read_coco(grabcut), seeds["grabcut50"])
    coco = DATA / "coco_mval" / "annotations.json"
    if coco.is_file():
        _, val = split_coco(coco)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "val.json"
            path.write_text(json.dumps(val))
            sets["coco_mval val"] = (read_coco(path, coco.parent), seeds["coco_mval val"])
    return sets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="append", required=True, type=lambda text: str(weights_path(text)),
                        help="weights file to evaluate, or fast|precise|paper (the shipped ones); repeatable")
    parser.add_argument("--seeds", type=int, nargs=3, default=(5, 3, 2), metavar=("VOC", "GRABCUT", "COCO"),
                        help="simulator seeds per set (default 5 3 2)")
    parser.add_argument("--sets", nargs="+", default=None, help="only these sets (VOC, grabcut50, 'coco_mval val')")
    parser.add_argument("--no-baselines", action="store_true", help="leave out GrabCut and the oracle")
    parser.add_argument("--style", default="maskrcnn", help="simulator style of the coarse masks: maskrcnn (default), "
                        "quarter, contour (bpr-studio simulate), or morph (morph_dataset below, used by no training "
                        "run); another simulator checks that a gain is not the simulator's bias")
    parser.add_argument("--threshold", type=float, default=0.5, help="simulator threshold (default 0.5)")
    parser.add_argument("--margins", type=float, nargs="+", default=None,
                        help="refine with each of these RefinerConfig.margin values (rows 'WEIGHTS margin M'); "
                             "default: the Refiner's default only")
    parser.add_argument("--max-shifts", type=int, nargs="+", default=None,
                        help="refine with each of these RefinerConfig.max_shift values in px (rows 'WEIGHTS max "
                             "shift N'; 0: no limit); default: the Refiner's default only")
    parser.add_argument("--snaps", type=int, nargs="+", default=None,
                        help="refine with each of these RefinerConfig.snap radii in px (rows 'WEIGHTS snap N'; 0: "
                             "off); default: the Refiner's default only")
    parser.add_argument("--input-sizes", type=int, nargs="+", default=None,
                        help="refine with each of these RefinerConfig.input_size values in px (rows 'WEIGHTS input "
                             "N'); default: the size the weights were trained at")
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=None,
                        help="refine with each of these RefinerConfig.patch_size values in px (rows 'WEIGHTS patch "
                             "N'; the network sees each patch resized to its input size); default: 64")
    parser.add_argument("--mirror", choices=("no", "yes", "both"), default=None,
                        help="RefinerConfig.mirror of the refined rows (default: the Refiner's, yes); both: each "
                             "row with and without it (those without it named 'WEIGHTS no mirror')")
    parser.add_argument("--path", choices=("fast", "plain", "both"), default="fast",
                        help="the Refiner's CPU path of the refined rows: fast (what the program runs on a CPU: ONNX "
                             "Runtime, int8 unless the weights forbid it), plain (fp32 PyTorch, what a GPU computes, in fp16 "
                             "there), both: each row on both (rows 'WEIGHTS plain')")
    parser.add_argument("--grabcut-band-fg", action="store_true",
                        help="also score grabcut50's rows against its masks with the uncertain band as foreground")
    parser.add_argument("--out", default=None, help="write every per-seed table and the means as JSON")
    args = parser.parse_args()
    refined = refined_rows(args)
    names = ["VOC", "grabcut50", "coco_mval val"]
    sets = evaluation_sets(dict(zip(names, args.seeds)))
    report = {}
    for set_name, (gt, n_seeds) in sets.items():
        if args.sets and set_name not in args.sets:
            continue
        tables, band_fg_tables = [], []
        band_fg = DATA / "grabcut50" / "annotations_band_fg.json"
        band_fg_gt = read_coco(band_fg) if set_name == "grabcut50" and args.grabcut_band_fg else None
        for seed in range(n_seeds):
            coarse = (morph_dataset(gt, seed) if args.style == "morph"
                      else simulate_predictions(gt, seed, style=args.style, threshold=args.threshold))
            rows = [("coarse", coarse)]
            rows += [(name, refine_predictions(gt, coarse, config, weights=w, device="cpu", fast=fast))
                     for name, w, config, fast in refined]
            if not args.no_baselines:
                rows.append(("grabcut", grabcut_predictions(gt, coarse)))
                rows.append(("oracle 2px", oracle_predictions(gt, coarse, 2)))
            tables.append(score_table(gt, rows))
            if band_fg_gt is not None:
                fg_rows = [(n, oracle_predictions(band_fg_gt, coarse, 2)) if n == "oracle 2px" else (n, d)
                           for n, d in rows]
                band_fg_tables.append(score_table(band_fg_gt, fg_rows))
            print(f"{set_name} seed {seed} done", file=sys.stderr, flush=True)
        for name, per_seed in ((set_name, tables), (set_name + " band-fg", band_fg_tables)):
            if per_seed:
                report[name] = {"per_seed": per_seed, "mean": mean_rows(per_seed)}
                print_table(f"{name} ({args.style}, threshold {args.threshold})", report[name]["mean"], per_seed)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


def refined_rows(args: argparse.Namespace) -> list[tuple[str, str, RefinerConfig, bool]]:
    """The refined rows asked for, one per combination of the weights, the listed margins, max shifts,
    snap radii, input sizes and patch sizes, the mirror and the path: (row name, weights file,
    RefinerConfig, fast path). A row is named by its weights file, each setting given as a list
    ("margin 0.1", "max shift 3", "input 80"), then "no mirror" (or "mirror", whichever is not the
    default) and "plain" where they apply."""
    listed = {"margin": ("margin", args.margins), "max_shift": ("max shift", args.max_shifts),
              "snap": ("snap", args.snaps), "input_size": ("input", args.input_sizes),
              "patch_size": ("patch", args.patch_sizes)}
    mirrors = {None: [RefinerConfig.mirror], "no": [False], "yes": [True], "both": [True, False]}[args.mirror]
    paths = {"fast": [True], "plain": [False], "both": [True, False]}[args.path]
    rows = []
    for weights, margin, max_shift, snap, input_size, patch_size, mirror, fast in itertools.product(
            args.weights, args.margins or [RefinerConfig.margin], args.max_shifts or [RefinerConfig.max_shift],
            args.snaps or [RefinerConfig.snap],
            args.input_sizes or [RefinerConfig.input_size], args.patch_sizes or [RefinerConfig.patch_size],
            mirrors, paths):
        config = RefinerConfig(margin=margin, max_shift=max_shift, snap=snap, input_size=input_size,
                               patch_size=patch_size, mirror=mirror)
        name = Path(weights).name + "".join(f" {label} {getattr(config, field):g}"
                                            for field, (label, values) in listed.items() if values)
        if mirror != RefinerConfig.mirror:
            name += " mirror" if mirror else " no mirror"
        rows.append((name + ("" if fast else " plain"), weights, config, fast))
    return rows


def morph_dataset(gt: Dataset, seed: int) -> Dataset:
    """Coarse masks of a simulator no training run uses: each ground-truth mask dilated or eroded (even
    odds) by 1-3 px, its outline then simplified (Douglas-Peucker, 1.5 px) like a hand-drawn polygon.
    Image i draws from default_rng([seed, i]); crowd instances are skipped."""
    images = []
    for i, rec in enumerate(gt.images):
        rng = np.random.default_rng([seed, i])
        out = []
        for inst in rec.instances:
            if inst.iscrowd:
                continue
            mask = inst.mask.astype(np.uint8)
            r = int(rng.integers(1, 4))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            mask = cv2.dilate(mask, kernel) if rng.random() < 0.5 else cv2.erode(mask, kernel)
            contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
            coarse = np.zeros_like(mask)
            for contour in contours:  # holes are filled: hand polygons rarely have them
                cv2.fillPoly(coarse, [cv2.approxPolyDP(contour, 1.5, True)], 1)
            if coarse.any():
                out.append(Instance.from_mask(coarse.astype(bool), inst.category_id, score=0.9))
        images.append(ImageRecord(rec.path, rec.width, rec.height, out, rec.image_id))
    return Dataset(images, dict(gt.categories))


def mean_rows(tables: list[list[dict]]) -> list[dict]:
    """Mean of each metric over the seeds, per row (rows in the same order in every table)."""
    out = []
    for i, row in enumerate(tables[0]):
        mean = {"name": row["name"], "instances": sum(t[i]["instances"] for t in tables)}
        for k in METRICS:
            mean[k] = float(np.mean([t[i][k] for t in tables]))
        if i:
            n = [t[i]["instances"] for t in tables]
            for k in ("worse", "better"):
                mean[k] = float(np.average([t[i][k] for t in tables], weights=n))
        out.append(mean)
    return out


def print_table(set_name: str, rows: list[dict], tables: list[list[dict]]) -> None:
    base = rows[0]
    oracle = next((r for r in rows if r["name"] == "oracle 2px"), None)
    print(f"\n{set_name}: mean of {len(tables)} simulator seeds, {base['instances']} instance predictions")
    print(f"{'':28} {'AP':>6} {'AF':>6} {'mIoU':>6} {'area%':>7} {'far%':>6} {'worse':>6} {'better':>6} "
          f"{'AP/or':>6} {'AF/or':>6}")
    for r in rows:
        gains = ["", ""]
        if oracle is not None and r is not base:
            gains = [f"{100 * (r[k] - base[k]) / (oracle[k] - base[k]):.0f}%" if abs(oracle[k] - base[k]) > 1e-9
                     else "" for k in ("ap", "af")]
        changed = [f"{r[k]:.1f}" if k in r else "" for k in ("worse", "better")]
        print(f"{r['name'][:28]:28} {r['ap']:6.1f} {r['af']:6.1f} {r['miou']:6.1f} {r['area_error']:+7.1f} "
              f"{r['far']:6.1f} {changed[0]:>6} {changed[1]:>6} {gains[0]:>6} {gains[1]:>6}")


if __name__ == "__main__":
    sys.exit(main())
