"""Write tests/data/mini_dataset/ from the shapes declared below, nothing else read: three labelme JSON
files with a drawing of their shapes each (data_annotated/), and the COCO file labelme's converter
(labelme2coco) would write of them (data_dataset_coco/annotations.json, images in JPEGImages/).
Run once; the files it writes are committed (same licence as the repository).

    python tests/data/make_mini_dataset.py

Every shape is a polygon with integer corners. labelme (and bpr_studio's labelme reader) fill
polygons with PIL, edges included, so the axis-aligned rectangle with corners (x0, y0) and (x1, y1)
covers (x1 - x0 + 1) * (y1 - y0 + 1) pixels: rect(60, 50, 159, 289) is 100 x 240 = 24000 pixels.
The figures the tests assert follow from the table below by that rule (tests/data/README.md).
"""

import json
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
OUT = HERE / "mini_dataset"


def rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    """The corners of the axis-aligned rectangle x0..x1, y0..y1 (both ends included when filled)."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# name, (width, height), instances in file order: (label, group_id, polygons). An instance of several
# polygons is one labelme group_id (one shape per polygon); pixel counts are those of the PIL fill.
IMAGES = [
    ("scene_1.jpg", (500, 340), [
        ("person", None, [rect(60, 50, 159, 289)]),                      # 100 x 240 = 24000
        # an L, edges included: rect(200, 40, 259, 199) and rect(200, 200, 329, 309): 60 x 160 + 130 x 110 = 23900
        ("person", None, [[[200, 40], [259, 40], [259, 200], [329, 200], [329, 309], [200, 309]]]),
        ("bottle", None, [rect(380, 150, 399, 209)]),                    # 20 x 60 = 1200, under 96 px
        ("__ignore__", None, [rect(340, 260, 499, 339)]),                # 160 x 80 = 12800, bottom right corner
    ]),
    ("scene_2.jpg", (500, 375), [
        ("person", None, [rect(40, 60, 139, 299)]),                      # 100 x 240 = 24000
        ("person", None, [rect(120, 80, 219, 279)]),                     # 100 x 200 = 20000
        ("person", None, [rect(200, 100, 299, 259)]),                    # 100 x 160 = 16000
        ("chair", None, [rect(250, 200, 449, 349)]),                     # 200 x 150 = 30000
        ("person", None, [rect(400, 40, 439, 79)]),                      # 40 x 40 = 1600
        ("__ignore__", None, [rect(450, 40, 489, 79)]),                  # 40 x 40 = 1600
        ("sofa", 0, [rect(260, 240, 359, 329), rect(380, 240, 479, 329)]),  # 2 x 100 x 90 = 18000
    ]),
    ("scene_3.jpg", (500, 375), [
        ("bus", None, [rect(100, 40, 399, 339)]),                        # 300 x 300 = 90000
        ("bus", None, [rect(0, 150, 119, 299)]),                         # 120 x 150 = 18000, left border
        ("car", None, [rect(380, 260, 499, 374)]),                       # 120 x 115 = 13800, bottom right corner
    ]),
]
# labelme2coco's labels file: __ignore__ is left out of the COCO file, _background_ is id 0
COCO_LABELS = ["__ignore__", "_background_", "person", "bottle", "chair", "sofa", "bus", "car"]


def _colour(key: str) -> tuple[int, int, int]:
    """A fixed, clearly visible BGR colour per instance."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    return tuple(int(v) for v in rng.integers(40, 230, 3))


def drawing(width: int, height: int, instances: list) -> np.ndarray:
    """A grey ramp with a faint floor line, each instance filled in file order in its own colour with
    darker stripes of 6 rows every 24 (a little texture for the boundary refiner and GrabCut)."""
    ramp = np.linspace(90, 160, width, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[None, :, None], height, 0), 3, 2).astype(np.uint8)
    image[int(height * 0.7):] -= 20
    rows = (np.arange(height) % 24 < 6)[:, None]
    for k, (label, group_id, polygons) in enumerate(instances):
        colour = np.array(_colour(f"{label} {k}"), np.uint8)
        inside = np.zeros((height, width), np.uint8)
        cv2.fillPoly(inside, [np.array(p, np.int32) for p in polygons], 1)
        inside = inside.astype(bool)
        image[inside] = colour
        image[inside & rows] = (colour * 0.85).astype(np.uint8)
    return image


def pil_mask(polygons: list, width: int, height: int) -> np.ndarray:
    """The instance's pixels as labelme rasterises its shapes (PIL, edges included). (H, W) bool."""
    image = Image.new("L", (width, height), 0)
    for polygon in polygons:
        ImageDraw.Draw(image).polygon([tuple(p) for p in polygon], fill=1, outline=1)
    return np.asarray(image, bool)


def labelme_file(name: str, width: int, height: int, instances: list) -> dict:
    shapes = [{"label": label, "points": polygon, "group_id": group_id, "description": "",
               "shape_type": "polygon", "flags": {}}
              for label, group_id, polygons in instances for polygon in polygons]
    return {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": name, "imageData": None,
            "imageHeight": height, "imageWidth": width}


def coco_file() -> dict:
    """As labelme2coco writes it: polygons as drawn, area and box of the PIL mask, __ignore__ left out;
    but annotation ids from 1, as in COCO's own files (id 0 is "no match" to COCOeval)."""
    categories = [{"supercategory": None, "id": k - 1, "name": name} for k, name in enumerate(COCO_LABELS) if k]
    ids = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for image_id, (name, (width, height), instances) in enumerate(IMAGES):
        images.append({"license": 0, "url": None, "file_name": f"JPEGImages/{name}", "height": height,
                       "width": width, "date_captured": None, "id": image_id})
        for label, _, polygons in instances:
            if label == "__ignore__":
                continue
            mask = pil_mask(polygons, width, height)
            ys, xs = np.nonzero(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": ids[label],
                "segmentation": [[float(v) for point in p for v in point] for p in polygons],
                "area": float(mask.sum()),
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                "iscrowd": 0})
    info = {"description": "BPR Studio test fixture (tests/data/make_mini_dataset.py)", "url": None, "version": None,
            "year": 2026, "contributor": None, "date_created": None}
    return {"info": info, "licenses": [{"url": None, "id": 0, "name": None}], "images": images,
            "type": "instances", "annotations": annotations, "categories": categories}


def main() -> None:
    (OUT / "data_annotated").mkdir(parents=True, exist_ok=True)
    (OUT / "data_dataset_coco" / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for name, (width, height), instances in IMAGES:
        jpeg = cv2.imencode(".jpg", drawing(width, height, instances), [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()
        (OUT / "data_annotated" / name).write_bytes(jpeg)
        (OUT / "data_dataset_coco" / "JPEGImages" / name).write_bytes(jpeg)
        data = labelme_file(name, width, height, instances)
        (OUT / "data_annotated" / name).with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    (OUT / "data_dataset_coco" / "annotations.json").write_text(json.dumps(coco_file()) + "\n")


if __name__ == "__main__":
    main()
