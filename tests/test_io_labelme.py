"""labelme in and out: the mini dataset, round trips through COCO, mask shapes, bad files (fuzz: test_fuzz_readers)."""

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bpr_studio.core.metrics import mask_iou
from bpr_studio.io.coco import read_coco, write_coco
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
from bpr_studio.io.errors import DatasetError
from bpr_studio.io.labelme import read_labelme, write_labelme

H, W = 40, 60


def test_reads_mini_dataset_like_labelmes_own_converter(mini_dataset):
    dataset = read_labelme(mini_dataset / "data_annotated")
    coco = read_coco(mini_dataset / "data_dataset_coco" / "annotations.json")
    assert [r.path.name for r in dataset.images] == ["scene_1.jpg", "scene_2.jpg", "scene_3.jpg"]
    by_name = {r.path.name: r for r in dataset.images}
    for theirs in coco.images:
        ours = [i for i in by_name[theirs.path.name].instances if not i.iscrowd]  # __ignore__ is crowd
        assert [dataset.categories[i.category_id] for i in ours] == [coco.categories[i.category_id] for i in theirs.instances]
        # labelme rasterises with PIL, pycocotools with its own rule: same shapes, boundaries differ
        assert all(mask_iou(a.mask, b.mask) > 0.9 for a, b in zip(ours, theirs.instances))
    sofa = [i for i in by_name["scene_2.jpg"].instances if dataset.categories[i.category_id] == "sofa"]
    assert len(sofa) == 1 and sofa[0].attributes["group_id"] == 0  # two shapes, one group, one instance
    # make_mini_dataset.IMAGES, PIL fill with edges: rect(x0, y0, x1, y1) has (x1 - x0 + 1) * (y1 - y0 + 1) pixels
    assert sofa[0].area == 2 * 100 * 90 and sofa[0].bbox == [260, 240, 220, 90]
    assert [i.area for i in by_name["scene_3.jpg"].instances] == [300 * 300, 120 * 150, 120 * 115]
    assert by_name["scene_1.jpg"].instances[1].area == 60 * 160 + 130 * 110  # the L
    ignore = [i for r in dataset.images for i in r.instances if i.iscrowd]
    assert {dataset.categories[i.category_id] for i in ignore} == {"__ignore__"}


def _key(dataset: Dataset) -> list:
    return [[(dataset.categories[i.category_id], i.score, i.iscrowd, int(i.area)) for i in r.instances]
            for r in dataset.images]


def test_labelme_coco_labelme_round_trip(mini_dataset, tmp_path):
    source = read_labelme(mini_dataset / "data_annotated")
    for record in source.images:
        for n, inst in enumerate(record.instances):
            inst.score = round(0.5 + n / 20, 3)
    write_coco(source, tmp_path / "coco.json")
    via_coco = read_coco(tmp_path / "coco.json")
    write_labelme(via_coco, tmp_path / "lm")
    back = read_labelme(tmp_path / "lm")
    assert _key(back) == _key(source)
    for a, b in zip(source.images, back.images):
        assert all((x.mask == y.mask).all() for x, y in zip(a.instances, b.instances))


def _dataset(folder: Path) -> Dataset:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "x.png"
    cv2.imwrite(str(path), np.zeros((H, W, 3), np.uint8))
    ring = np.zeros((H, W), np.uint8)
    cv2.circle(ring, (15, 15), 10, 1, -1)
    cv2.circle(ring, (15, 15), 4, 0, -1)
    parts = np.zeros((H, W), bool)
    parts[2:8, 40:50] = True
    parts[20:30, 35:58] = True
    dot = np.zeros((H, W), bool)
    dot[35, 5] = True
    record = ImageRecord(path=path, width=W, height=H, instances=[
        Instance.from_mask(ring.astype(bool), 1), Instance.from_mask(parts, 2), Instance.from_mask(dot, 1, iscrowd=True)])
    return Dataset(images=[record], categories={1: "a", 2: "b"})


def test_holes_become_mask_shapes_parts_share_a_group(tmp_path):
    dataset = _dataset(tmp_path / "src")
    (json_path,) = write_labelme(dataset, tmp_path / "out")
    shapes = json.loads(json_path.read_text())["shapes"]
    assert [s["shape_type"] for s in shapes] == ["mask", "polygon", "polygon", "polygon"]
    assert shapes[1]["group_id"] == shapes[2]["group_id"] is not None and shapes[3]["iscrowd"] == 1
    assert json.loads(json_path.read_text())["imagePath"] == "../src/x.png"
    back = read_labelme(tmp_path / "out")
    assert [(i.iscrowd, back.categories[i.category_id]) for i in back.images[0].instances] == \
        [(False, "a"), (False, "b"), (True, "a")]
    assert (back.images[0].masks() == dataset.images[0].masks()).all()


def _labelme_file(folder: Path, shapes: list, width=W, height=H, image="x.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "x.png"), np.zeros((H, W, 3), np.uint8))
    path = folder / "x.json"
    path.write_text(json.dumps({"version": "5.5.0", "shapes": shapes, "imagePath": image,
                                "imageHeight": height, "imageWidth": width}))
    return path


POLY = {"label": "a", "points": [[1, 1], [10, 1], [10, 10]], "group_id": None, "shape_type": "polygon"}


@pytest.mark.parametrize("shape, message", [
    (dict(POLY, points=[[1, 1], [10, 1]]), r"x.json: shape 0 \(label 'a'\): polygon has 2 points"),
    (dict(POLY, label=""), r"shape 0 .*'label' must be a non-empty string"),
    (dict(POLY, shape_type="mask", points=[[0, 0], [3, 3]], mask="!!"), r"shape 0 .*not a readable PNG|not valid base64"),
    (dict(POLY, shape_type="blob"), r"shape 0 .*unknown shape_type 'blob'"),
    (dict(POLY, group_id="g"), r"shape 0 .*group_id must be an integer"),
    (dict(POLY, score=float("nan")), r"shape 0 .*score must be a finite number, got nan"),
    (dict(POLY, points=[[1, 1], [10 ** 400, 1], [10, 10]]), r"shape 0 .*points must be a list of \[x, y\] numbers"),
])
def test_bad_shapes_name_file_and_shape(tmp_path, shape, message):
    with pytest.raises(DatasetError, match=message):
        read_labelme(_labelme_file(tmp_path, [shape]))


def test_mask_shape_outside_the_image_is_an_error(tmp_path):
    ok, png = cv2.imencode(".png", np.ones((5, 5), np.uint8))
    shape = dict(POLY, shape_type="mask", points=[[W - 2, 0], [W + 2, 4]], mask=base64.b64encode(png.tobytes()).decode())
    with pytest.raises(DatasetError, match=r"mask of 5x5 pixels at \(58, 0\) does not fit"):
        read_labelme(_labelme_file(tmp_path, [shape]))


def test_missing_image_wrong_size_truncated_json(tmp_path):
    path = _labelme_file(tmp_path / "a", [POLY], image="y.jpg")
    (tmp_path / "a" / "x.png").unlink()
    with pytest.raises(DatasetError, match=r"x.json: image not found \(imagePath 'y.jpg'"):
        read_labelme(path)
    with pytest.raises(DatasetError, match=r"x.png: image is 60x40 pixels, but the dataset file says 60x41"):
        read_labelme(_labelme_file(tmp_path / "b", [POLY], height=H + 1))
    path = _labelme_file(tmp_path / "c", [POLY])
    path.write_text(path.read_text()[:30])
    with pytest.raises(DatasetError, match=r"x.json: not valid JSON"):
        read_labelme(tmp_path / "c")


def test_errors_list_keeps_the_good_files(tmp_path):
    _labelme_file(tmp_path, [POLY])
    cv2.imwrite(str(tmp_path / "z.png"), np.zeros((H, W, 3), np.uint8))
    (tmp_path / "y.json").write_text("{")
    (tmp_path / "w.png").write_bytes(b"\x89PNG broken")
    errors = []
    dataset = read_labelme(tmp_path, errors=errors)
    assert [r.path.name for r in dataset.images] == ["x.png", "z.png"]
    assert sorted(p.name for p, _ in errors) == ["w.png", "y.json"]


def test_failed_export_leaves_previous_files(tmp_path):
    dataset = _dataset(tmp_path / "src")
    (json_path,) = write_labelme(dataset, tmp_path / "out")
    before = json_path.read_bytes()
    dataset.images[0].instances.append(Instance.from_mask(np.zeros((H, W), bool), 1))
    with pytest.raises(DatasetError, match=r"x.png: instance 3 \(a\): empty mask"):
        write_labelme(dataset, tmp_path / "out")
    assert json_path.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.json"]
