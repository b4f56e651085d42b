"""Build the demo dataset shipped in bpr_studio/resources/demo/ (what ``python main.py`` opens).

The three PASCAL VOC photographs of the labelme example (shared/data/labelme_voc, VOC terms of
use: research and testing) with their human polygons as ground truth (annotations.json, COCO),
and coarse predictions simulated from that ground truth the way a Mask R-CNN head produces them
(predictions.json, COCO results): each mask is pooled to a 28x28 grid inside a slightly jittered
box and pasted back with bilinear upsampling, which rounds off corners and thin parts - the
boundary errors BPR is made to fix (bpr_studio.core.simulate, ``bpr-studio simulate``).

Usage: python bench/make_demo.py [SHARED_DATA_DIR]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bpr_studio import RESOURCES
from bpr_studio.pipeline.datasets import simulate_predictions
from bpr_studio.io.coco import write_coco, write_coco_results
from bpr_studio.io.dataset import Dataset, ImageRecord
from bpr_studio.io.labelme import read_labelme

IGNORED = "__ignore__"  # labelme's "do not care" regions are not objects


def main(shared: Path) -> int:
    source = read_labelme(shared / "labelme_voc" / "data_annotated")
    demo = RESOURCES / "demo"
    images_dir = demo / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    keep = {cid: name for cid, name in source.categories.items() if name != IGNORED}
    records = []
    for rec in source.images:
        target = images_dir / Path(rec.path).name
        shutil.copyfile(rec.path, target)
        target.chmod(0o644)
        instances = [inst for inst in rec.instances if inst.category_id in keep]
        records.append(ImageRecord(target, rec.width, rec.height, instances, rec.image_id))
    ground_truth = Dataset(records, keep)
    write_coco(ground_truth, demo / "annotations.json")
    predictions = simulate_predictions(ground_truth, seed=0)
    write_coco_results(predictions, demo / "predictions.json")
    for name in ("annotations.json", "predictions.json"):
        (demo / name).chmod(0o644)  # atomic writes create private files; these are shipped
    n_gt = sum(len(r.instances) for r in ground_truth.images)
    n_pred = sum(len(r.instances) for r in predictions.images)
    size = sum(p.stat().st_size for p in demo.rglob("*") if p.is_file())
    print(f"{demo}: {len(records)} images, {n_gt} ground-truth instances, {n_pred} predictions, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
