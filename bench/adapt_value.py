"""What adaptation is worth: adapt on the corrections of some images, score on other images (issue 14).

    python bench/adapt_value.py split-coco --out RUNS            # coco_mval: eval set + correction pools
    python bench/adapt_value.py split-voc --out RUNS --eval 0    # VOC: corrections on two photographs, eval on one
    python bench/adapt_value.py adapt --annotations A --predictions P --n N --out W.pt --minutes 3 --threads 1

``split-coco`` simulates Mask R-CNN masks (``bpr-studio simulate``, seed 0) of coco_mval, puts the
instances of 1 image per category into the evaluation set (``eval_gt.json``, ``eval_coarse.json``)
and the instances of every other image into the correction pool (``pool_gt.json``,
``pool_coarse.json``), so no image is in both. ``adapt`` takes the first N pool instances in a fixed
random order (an annotator who corrected them), adapts, writes the adapted weights whether or not the
guard kept them, and prints one JSON line: the guard's figures, training time and the process's peak
resident memory. Score with ``bpr-studio eval --annotations eval_gt.json --predictions
eval_coarse.json --refine W.pt``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bpr_studio.io.coco import read_coco, read_coco_results, write_coco, write_coco_results
from bpr_studio.io.dataset import Dataset

SHARED = Path("/work/shared/data")


def _subset(dataset: Dataset, keep) -> Dataset:
    """Dataset with the images (indices) in ``keep``."""
    return Dataset([dataset.images[i] for i in keep], dict(dataset.categories))


def split_coco(out: Path, per_category: int = 1, seed: int = 0) -> None:
    from bpr_studio.pipeline.datasets import simulate_predictions

    gt = read_coco(SHARED / "coco_mval" / "annotations.json")
    coarse = simulate_predictions(gt, seed=0)
    rng = np.random.default_rng(seed)
    by_category: dict[int, list[int]] = {}
    for i, rec in enumerate(gt.images):
        for inst in rec.instances:
            by_category.setdefault(inst.category_id, []).append(i)
    eval_images: set[int] = set()
    for cid, images in sorted(by_category.items()):
        for i in rng.permutation(sorted(set(images)))[:per_category]:
            eval_images.add(int(i))
    eval_idx = sorted(eval_images)
    pool_idx = [i for i in range(len(gt.images)) if i not in eval_images]
    out.mkdir(parents=True, exist_ok=True)
    for name, idx in (("eval", eval_idx), ("pool", pool_idx)):
        write_coco(_subset(gt, idx), out / f"{name}_gt.json")
        write_coco_results(_subset(coarse, idx), out / f"{name}_coarse.json")
        print(f"{name}: {len(idx)} images, {sum(len(gt.images[i].instances) for i in idx)} instances")


def split_voc(out: Path, eval_index: int) -> None:
    from bpr_studio.pipeline.datasets import simulate_predictions

    gt = read_coco(SHARED / "labelme_voc" / "data_dataset_coco" / "annotations.json")
    coarse = simulate_predictions(gt, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    pool = [i for i in range(len(gt.images)) if i != eval_index]
    for name, idx in (("eval", [eval_index]), ("pool", pool)):
        write_coco(_subset(gt, idx), out / f"{name}_gt.json")
        write_coco_results(_subset(coarse, idx), out / f"{name}_coarse.json")
        print(f"{name}: {[Path(gt.images[i].path).name for i in idx]}, "
              f"{sum(len(gt.images[i].instances) for i in idx)} instances")


def adapt(args) -> None:
    import torch

    from bpr_studio.pipeline.datasets import corrections_from_datasets
    from bpr_studio.core.adapt import CorrectedImage, adapt_weights

    gt = read_coco(args.annotations)
    images = corrections_from_datasets(gt, read_coco_results(args.predictions, gt))
    pairs = [(k, j) for k, image in enumerate(images) for j in range(len(image))]
    chosen = sorted(pairs[p] for p in np.random.default_rng(args.seed).permutation(len(pairs))[:args.n])
    subset = []
    for k, image in enumerate(images):
        js = [j for kk, j in chosen if kk == k]
        if js:
            subset.append(CorrectedImage(image.name, image.read, [image.coarse[j] for j in js],
                                         [image.final[j] for j in js]))
    torch.set_num_threads(max(args.threads, 1))
    start = time.monotonic()
    result = adapt_weights(subset, args.out, minutes=args.minutes, threads=args.threads, device="cpu",
                           rejected_out=args.out, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps({"n": sum(len(s) for s in subset), "kept": result.kept, "before": result.before,
                      "after": result.after, "train_instances": result.train_instances,
                      "holdout": result.holdout_instances, "patches": result.patches,
                      "train_s": round(result.train_seconds, 1), "total_s": round(time.monotonic() - start, 1),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("split-coco")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("split-voc")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--eval", type=int, required=True)
    p = sub.add_parser("adapt")
    p.add_argument("--annotations", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--n", type=int, default=10 ** 9)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.cmd == "split-coco":
        split_coco(args.out)
    elif args.cmd == "split-voc":
        split_voc(args.out, args.eval)
    else:
        adapt(args)


if __name__ == "__main__":
    main()
