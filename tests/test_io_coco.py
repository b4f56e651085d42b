"""COCO in and out, checked with pycocotools' own COCO and COCOeval (fuzz: test_fuzz_readers)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bpr_studio.core.rle import encode_rle
from bpr_studio.io.coco import images_from_folder, read_coco, read_coco_results, write_coco, write_coco_results
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
from bpr_studio.io.errors import DatasetError

H, W = 48, 64


def shapes() -> list[np.ndarray]:
    """(H, W) bool masks: a ring (hole), two separate blobs, a noisy blob with many holes, a thin line."""
    ring = np.zeros((H, W), np.uint8)
    cv2.circle(ring, (20, 20), 15, 1, -1)
    cv2.circle(ring, (20, 20), 6, 0, -1)
    parts = np.zeros((H, W), np.uint8)
    cv2.rectangle(parts, (40, 5), (60, 15), 1, -1)
    cv2.rectangle(parts, (45, 30), (55, 45), 1, -1)
    noisy = np.random.default_rng(1).random((H, W)) < 0.6
    noisy[:20] = False
    line = np.zeros((H, W), bool)
    line[2, 30:50] = True
    return [ring.astype(bool), parts.astype(bool), noisy, line]


def make_dataset(folder: Path, scores=False) -> Dataset:
    folder.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(categories={1: "person", 2: "car"})
    for k in range(2):
        path = folder / f"img{k}.png"
        cv2.imwrite(str(path), np.full((H, W, 3), 40 * k, np.uint8))
        record = ImageRecord(path=path, width=W, height=H, image_id=10 + k)
        for n, mask in enumerate(shapes()):
            record.instances.append(Instance.from_mask(np.roll(mask, k, axis=1), 1 + n % 2,
                                                       score=0.9 - n / 10 if scores else None))
        dataset.images.append(record)
    return dataset


def test_reads_labelme_converter_file_like_pycocotools(mini_dataset):
    path = mini_dataset / "data_dataset_coco" / "annotations.json"
    dataset = read_coco(path)
    coco = COCO(str(path))
    # make_mini_dataset.COCO_LABELS: __ignore__ left out, then _background_ 0, person 1, ..., car 6
    assert dataset.categories == {0: "_background_", 1: "person", 2: "bottle", 3: "chair", 4: "sofa", 5: "bus", 6: "car"}
    assert [r.image_id for r in dataset.images] == [0, 1, 2]
    assert all(r.path.is_file() for r in dataset.images)
    # make_mini_dataset.IMAGES: 4, 7 and 3 instances, one __ignore__ in each of the first two: 12 in all
    assert [len(r.instances) for r in dataset.images] == [3, 6, 3]
    for record in dataset.images:
        for inst in record.instances:
            ann = coco.anns[inst.source_id]
            assert inst.category_id == ann["category_id"] and (inst.mask == coco.annToMask(ann).astype(bool)).all()


@pytest.mark.parametrize("polygons", [False, True])
def test_export_loads_in_pycocotools_and_scores_ap_one(tmp_path, polygons):
    dataset = make_dataset(tmp_path / "img")
    write_coco(dataset, tmp_path / "gt.json", polygons=polygons)
    write_coco_results(dataset, tmp_path / "res.json")
    gt = COCO(str(tmp_path / "gt.json"))
    for record in dataset.images:
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[record.image_id]))
        assert len(anns) == len(record.instances)
        for ann, inst in zip(anns, record.instances):
            assert (gt.annToMask(ann).astype(bool) == inst.mask).all()  # holes and parts included
            assert ann["area"] == inst.mask.sum()
        if polygons:
            assert all(isinstance(a["segmentation"], list) for a in anns)
    evaluator = COCOeval(gt, gt.loadRes(str(tmp_path / "res.json")), "segm")
    evaluator.params.areaRng = [[0, 1e10]]  # one area range: the masks here are all "small"
    evaluator.params.areaRngLbl = ["all"]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_write_read_keeps_ids_scores_and_extra_keys(tmp_path):
    dataset = make_dataset(tmp_path / "img", scores=True)
    for n, inst in enumerate(dataset.images[0].instances):
        inst.source_id = 100 + n
        inst.attributes = {"note": f"n{n}"}
    write_coco(dataset, tmp_path / "out" / "a.json")
    back = read_coco(tmp_path / "out" / "a.json")
    assert [r.image_id for r in back.images] == [10, 11]
    assert [r.path.resolve() for r in back.images] == [r.path.resolve() for r in dataset.images]
    first = back.images[0].instances
    assert [i.source_id for i in first] == [100, 101, 102, 103]
    assert [i.attributes for i in first] == [{"note": f"n{n}"} for n in range(4)]
    assert [i.score for r in back.images for i in r.instances] == [i.score for r in dataset.images for i in r.instances]
    ids = [i.source_id for r in back.images for i in r.instances]
    assert len(set(ids)) == len(ids) and 0 not in ids  # COCOeval reads id 0 as "no match"


def _coco_file(tmp_path: Path, annotations: list, width=W, height=H, name="a.png") -> Path:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 3), np.uint8))
    data = {"images": [{"id": 1, "file_name": name, "width": width, "height": height}],
            "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_reads_uncompressed_and_compressed_rle_and_crowd(tmp_path):
    mask = shapes()[0]
    uncompressed = {"size": [H, W], "counts": []}
    flat = mask.flatten(order="F")
    value, run = False, 0
    for pixel in flat:
        if pixel != value:
            uncompressed["counts"].append(run)
            value, run = pixel, 0
        run += 1
    uncompressed["counts"].append(run)
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": uncompressed, "iscrowd": 1},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": encode_rle(mask), "iscrowd": 0}]
    dataset = read_coco(_coco_file(tmp_path, anns))
    a, b = dataset.images[0].instances
    assert a.iscrowd and not b.iscrowd
    assert (a.mask == mask).all() and (b.mask == mask).all()


GOOD = {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 20, 1, 20, 20]], "iscrowd": 0}


@pytest.mark.parametrize("change, message", [
    ({"segmentation": [[1, 1, 20, 1]]}, r"annotation id 7 \(image a.png\), polygon 0: polygon has 2 points"),
    ({"category_id": 9}, r"annotation id 7 \(image a.png\): unknown category id 9"),
    ({"segmentation": {"size": [H + 1, W], "counts": "abc"}}, r"annotation id 7 .*RLE size \[49, 64\] disagrees"),
    ({"segmentation": {"size": [H, W], "counts": [5, 5]}}, r"annotation id 7 .*RLE covers 10 pixels"),
    ({"segmentation": {"size": [H, W], "counts": "0\x7f"}}, r"annotation id 7 .*malformed"),
    ({"image_id": 5}, r"annotation id 7 refers to unknown image id 5"),
    ({"segmentation": [[1, 1, 1e9, 1, 20, 20]]}, r"annotation id 7 .*far outside"),
    ({"segmentation": [[1, 1, 10 ** 400, 1, 20, 20]]}, r"polygon 0: points must be a list of \[x, y\] numbers"),
    ({"score": float("nan")}, r"annotation id 7 .*score must be a finite number, got nan"),
    ({"score": 10 ** 400}, r"annotation id 7 .*score must be a finite number"),
])
def test_bad_annotations_name_file_and_instance(tmp_path, change, message):
    path = _coco_file(tmp_path, [dict(GOOD, **change)])
    with pytest.raises(DatasetError, match=message) as info:
        read_coco(path)
    assert str(path) in str(info.value)


def test_missing_image_and_wrong_size_name_the_image(tmp_path):
    with pytest.raises(DatasetError, match=r"b.png: image file not found"):
        read_coco(_coco_file(tmp_path, [GOOD], name="b.png"))
    with pytest.raises(DatasetError, match=r"a.png: image is 64x48 pixels, but the dataset file says 65x48"):
        read_coco(_coco_file(tmp_path, [GOOD], width=W + 1))


def test_truncated_json_is_an_error(tmp_path):
    path = _coco_file(tmp_path, [GOOD])
    path.write_text(path.read_text()[:-20])
    with pytest.raises(DatasetError, match=r"ann.json: not valid JSON .*truncated"):
        read_coco(path)


def test_errors_list_collects_and_skips(tmp_path):
    path = _coco_file(tmp_path, [GOOD, dict(GOOD, id=8, category_id=9)])
    errors = []
    dataset = read_coco(path, errors=errors)
    assert [i.source_id for i in dataset.images[0].instances] == [7]
    assert len(errors) == 1 and errors[0][0] == path and "annotation id 8" in errors[0][1]


def test_results_match_by_image_id_file_name_and_folder_rules(tmp_path):
    dataset = make_dataset(tmp_path / "img", scores=True)
    write_coco(dataset, tmp_path / "gt.json")
    write_coco_results(dataset, tmp_path / "res.json")
    gt = read_coco(tmp_path / "gt.json")
    preds = read_coco_results(tmp_path / "res.json", gt)
    assert [len(r.instances) for r in preds.images] == [4, 4]
    assert [i.score for i in preds.images[1].instances] == [i.score for i in dataset.images[1].instances]

    # without the annotations file: file_name finds the image
    folder = images_from_folder(tmp_path / "img")
    assert [r.image_id for r in folder.images] == [0, 1]
    preds = read_coco_results(tmp_path / "res.json", folder)
    assert [len(r.instances) for r in preds.images] == [4, 4]
    assert preds.categories == {1: "1", 2: "2"}

    # without file_name: image_id against the folder's ids (position in sorted order)
    entries = json.loads((tmp_path / "res.json").read_text())
    for e in entries:
        del e["file_name"]
        e["image_id"] -= 10
    (tmp_path / "res2.json").write_text(json.dumps(entries))
    assert [len(r.instances) for r in read_coco_results(tmp_path / "res2.json", folder).images] == [4, 4]
    entries[3]["image_id"] = 99
    (tmp_path / "res2.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=r"res2.json: result 3: no image found for image_id 99"):
        read_coco_results(tmp_path / "res2.json", folder)


def test_a_deleted_image_is_an_error_naming_it_never_another_photo(tmp_path):
    # issue 11.1: with positions as ids, the deleted photo's id pointed at the next photo
    dataset = make_dataset(tmp_path / "img", scores=True)
    cv2.imwrite(str(tmp_path / "img" / "img2.png"), np.zeros((H, W, 3), np.uint8))
    dataset.images.append(ImageRecord(path=tmp_path / "img" / "img2.png", width=W, height=H, image_id=12,
                                      instances=[Instance.from_mask(shapes()[0], 1, score=0.5)]))
    for k, record in enumerate(dataset.images):  # ids as images_from_folder gives them: positions
        record.image_id = k
    write_coco_results(dataset, tmp_path / "res.json")
    (tmp_path / "img" / "img0.png").unlink()
    folder = images_from_folder(tmp_path / "img")
    assert [r.path.name for r in folder.images] == ["img1.png", "img2.png"]
    with pytest.raises(DatasetError, match=r"res.json: result 0: file_name 'img0.png': no such image among "
                                           r"the 2 images read \(missing or unreadable\)"):
        read_coco_results(tmp_path / "res.json", folder)
    errors = []
    preds = read_coco_results(tmp_path / "res.json", folder, errors=errors)
    assert len(errors) == 4 and all("img0.png" in message for _, message in errors)
    assert [len(r.instances) for r in preds.images] == [4, 1]  # nothing moved onto img1 or img2
    assert preds.images[0].instances[0].score == dataset.images[1].instances[0].score

    entries = json.loads((tmp_path / "res.json").read_text())
    entries[4]["file_name"] = ""
    (tmp_path / "res.json").write_text(json.dumps(entries))
    errors = []
    read_coco_results(tmp_path / "res.json", folder, errors=errors)
    assert errors[4][1].endswith("res.json: result 4: 'file_name' must be a non-empty string, got ''")


def test_numeric_file_names_give_coco_ids(tmp_path):
    for name in ("000000000139.jpg", "000000000285.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    assert [r.image_id for r in images_from_folder(tmp_path).images] == [139, 285]
