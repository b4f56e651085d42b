"""Crop a COCO dataset's images to their instances, losslessly, to carry it to a remote training machine.

    python tools/crop_dataset.py --annotations A.json --images DIR --out OUT [--margin 0.12] [--pad 40]

Each image is cut to the union of its instances' boxes, each widened by ``margin`` x its longer side
+ ``pad`` px (room for boundary patches and for simulated masks that grow), with ``jpegtran -crop``
(Debian: libjpeg-turbo-progs): JPEG blocks are copied, not re-encoded, and the crop's corner is put
on a 16-px block boundary so jpegtran keeps it where asked. Writes ``OUT/annotations.json`` (masks,
boxes and sizes in the cropped frames) and ``OUT/<file_name>``. coco_mval's 590 training images:
93 MiB -> 44 MiB. Needs JPEG images.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def crop_box(image: dict, boxes: list[list[float]], margin: float, pad: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in px of the crop of ``image`` (a COCO image entry) around ``boxes`` (COCO
    [x, y, w, h]); x0, y0 multiples of 16; the whole image when there are no boxes."""
    if not boxes:
        return 0, 0, image["width"], image["height"]
    x0 = min(x - margin * max(w, h) - pad for x, y, w, h in boxes)
    y0 = min(y - margin * max(w, h) - pad for x, y, w, h in boxes)
    x1 = max(x + w + margin * max(w, h) + pad for x, y, w, h in boxes)
    y1 = max(y + h + margin * max(w, h) + pad for x, y, w, h in boxes)
    return (int(max(0, x0)) // 16 * 16, int(max(0, y0)) // 16 * 16,
            min(image["width"], math.ceil(x1)), min(image["height"], math.ceil(y1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", required=True, help="COCO ground truth (RLE or polygon masks)")
    parser.add_argument("--images", required=True, help="folder the images' file names are relative to")
    parser.add_argument("--out", required=True, help="folder to write (annotations.json and the images)")
    parser.add_argument("--margin", type=float, default=0.12, help="share of a box's longer side kept around it")
    parser.add_argument("--pad", type=int, default=40, help="px kept around each box beyond the margin")
    args = parser.parse_args(argv)
    data = json.loads(Path(args.annotations).read_text())
    out = Path(args.out)
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images, annotations, before, after = [], [], 0, 0
    for image in data["images"]:
        anns = by_image.get(image["id"], [])
        x0, y0, x1, y1 = crop_box(image, [a["bbox"] for a in anns], args.margin, args.pad)
        src, dst = Path(args.images) / image["file_name"], out / image["file_name"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["jpegtran", "-copy", "none", "-crop", f"{x1 - x0}x{y1 - y0}+{x0}+{y0}", "-outfile",
                        str(dst), str(src)], check=True)
        cropped = cv2.imread(str(dst))
        if cropped is None or cropped.shape[:2] != (y1 - y0, x1 - x0):
            print(f"{src}: jpegtran did not crop it to {x1 - x0}x{y1 - y0} (a JPEG image expected)", file=sys.stderr)
            return 1
        before, after = before + src.stat().st_size, after + dst.stat().st_size
        images.append({**image, "width": x1 - x0, "height": y1 - y0})
        for ann in anns:
            h, w = image["height"], image["width"]
            seg = ann["segmentation"]
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list) else (
                mask_utils.frPyObjects(seg, h, w) if isinstance(seg.get("counts"), list) else seg)
            m = mask_utils.decode(rle)[y0:y1, x0:x1]
            new = mask_utils.encode(np.asfortranarray(m))
            new["counts"] = new["counts"].decode()
            annotations.append({**ann, "segmentation": new, "bbox": [float(v) for v in mask_utils.toBbox(new)],
                                "area": float(m.sum())})
    (out / "annotations.json").write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    print(f"{len(images)} images, {len(annotations)} instances: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
          f"in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
