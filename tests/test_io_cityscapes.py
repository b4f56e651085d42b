"""Cityscapes in and out, checked with cityscapesscripts' own json2instanceImg and instance-level evaluator."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bpr_studio.io.cityscapes import (INSTANCE_CATEGORIES, LABELS, read_cityscapes, read_cityscapes_results,
                                      write_cityscapes)
from bpr_studio.io.coco import read_coco, write_coco
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
from bpr_studio.io.errors import DatasetError
from bpr_studio.io.formats import load_dataset, save_dataset

H, W = 64, 128


def _masks() -> list[tuple[int, np.ndarray]]:
    """(category id, (H, W) bool) for a few non-overlapping objects, one with a hole, one in two parts."""
    ring = np.zeros((H, W), np.uint8)
    cv2.circle(ring, (30, 30), 20, 1, -1)
    cv2.circle(ring, (30, 30), 7, 0, -1)
    car = np.zeros((H, W), np.uint8)
    cv2.rectangle(car, (60, 10), (90, 40), 1, -1)
    two = np.zeros((H, W), np.uint8)
    cv2.rectangle(two, (95, 5), (120, 20), 1, -1)
    cv2.rectangle(two, (100, 35), (125, 60), 1, -1)
    inner = np.zeros((H, W), np.uint8)
    cv2.circle(inner, (30, 30), 4, 1, -1)
    return [(1, ring.astype(bool)), (2, car.astype(bool)), (2, two.astype(bool)), (1, inner.astype(bool))]


def make_dataset(folder: Path, names=("testcity_000000_000001", "testcity_000000_000002"), scores=False) -> Dataset:
    """Small random images under ``folder`` with the objects of ``_masks`` (shifted per image)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(categories={1: "person", 2: "car"})
    for k, name in enumerate(names):
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        record = ImageRecord(path=path, width=W, height=H, image_id=k)
        for n, (cid, mask) in enumerate(_masks()):
            mask = np.roll(mask, k, axis=0)
            record.instances.append(Instance.from_mask(mask, cid, score=(0.5 + n / 10) if scores else None))
        dataset.images.append(record)
    return dataset


def test_label_table_agrees_with_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels
    ours = [(l.name, l.id, l.has_instances, l.ignore_in_eval) for l in LABELS]
    assert ours == [(l.name, l.id, l.hasInstances, l.ignoreInEval) for l in labels]


def test_polygons_agree_with_json2instanceImg_and_round_trip(tmp_path):
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    dataset = make_dataset(tmp_path / "src")
    write_cityscapes(dataset, tmp_path / "cs")
    gt_dir = tmp_path / "cs" / "gtFine" / "val" / "default"
    for record in dataset.images:
        base = record.path.stem
        ours = np.array(Image.open(gt_dir / f"{base}_gtFine_instanceIds.png"))
        annotation = Annotation()
        annotation.fromJsonFile(str(gt_dir / f"{base}_gtFine_polygons.json"))
        # json2instanceImg's own save step fails on Pillow >= 11 (no 32-bit PNG), so use its rasteriser
        theirs = np.array(createInstanceImage(annotation, "ids"))
        assert (ours == theirs).mean() >= 0.995
        assert set(np.unique(ours)) == {0, 24000, 24001, 26000, 26001}
        label_ids = np.array(Image.open(gt_dir / f"{base}_gtFine_labelIds.png"))
        assert set(np.unique(label_ids)) == {0, 24, 26}
    back = read_cityscapes(tmp_path / "cs")
    assert [r.path.name for r in back.images] == [f"{r.path.stem}_leftImg8bit.png" for r in dataset.images]
    for a, b in zip(dataset.images, back.images):
        assert sorted(m.sum() for m in a.masks()) == sorted(m.sum() for m in b.masks())
        assert sorted(back.categories[i.category_id] for i in b.instances) == \
            sorted(dataset.categories[i.category_id] for i in a.instances)


def test_polygons_only_ground_truth_is_rasterised(tmp_path):
    write_cityscapes(make_dataset(tmp_path / "src"), tmp_path / "cs")
    exact = read_cityscapes(tmp_path / "cs")
    for png in (tmp_path / "cs").rglob("*_instanceIds.png"):
        png.unlink()
    from_polygons = read_cityscapes(tmp_path / "cs")
    for a, b in zip(exact.images, from_polygons.images):
        assert (a.masks() == b.masks()).mean() >= 0.995


def _evaluate(monkeypatch, root: Path, gt_dir: Path) -> dict:
    """Run cityscapesscripts' instance-level evaluator hermetically under ``root``."""
    import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as ev
    # the evaluator predates NumPy 2: np.in1d is gone, and its JSON dumps (matches.json, the
    # ground-truth cache) fail on NumPy integers; the dumps are side files, the AP is computed in memory
    monkeypatch.setattr(np, "in1d", np.isin, raising=False)
    monkeypatch.setattr(ev, "writeDict2JSON", lambda data, name: None)
    monkeypatch.setenv("CITYSCAPES_RESULTS", str(root / "results"))
    monkeypatch.chdir(root)  # it writes matches.json into the working folder
    for name, value in {"predictionPath": None, "predictionWalk": None, "quiet": True, "JSONOutput": False,
                        "gtInstancesFile": str(root / "gtInstances.json"), "colorized": False}.items():
        monkeypatch.setattr(ev.args, name, value)
    gts = sorted(str(p) for p in gt_dir.rglob("*_gtFine_instanceIds.png"))
    preds = [ev.getPrediction(gt, ev.args) for gt in gts]
    return ev.evaluateImgLists(preds, gts, ev.args)


def test_results_export_scores_ap_one(tmp_path, monkeypatch):
    gt = make_dataset(tmp_path / "src")
    write_cityscapes(gt, tmp_path / "cs")
    predictions = read_cityscapes(tmp_path / "cs")
    for record in predictions.images:
        for n, inst in enumerate(record.instances):
            inst.score = 0.9 - n / 100
    write_cityscapes(predictions, tmp_path / "cs")
    result = _evaluate(monkeypatch, tmp_path / "cs", tmp_path / "cs" / "gtFine")
    assert result["averages"]["allAp"] == pytest.approx(1.0)
    back = read_cityscapes_results(tmp_path / "cs" / "results", read_cityscapes(tmp_path / "cs"))
    for a, b in zip(predictions.images, back.images):
        assert [i.score for i in a.instances] == [i.score for i in b.instances]
        assert all((x.mask == y.mask).all() for x, y in zip(a.instances, b.instances))


def test_coco_cityscapes_coco_round_trip_keeps_instances_categories_scores(tmp_path):
    source = make_dataset(tmp_path / "src", scores=True)
    write_coco(source, tmp_path / "a.json")
    coco = read_coco(tmp_path / "a.json")
    save_dataset(coco, tmp_path / "cs", "cityscapes")
    cs = load_dataset(tmp_path / "cs", predictions=tmp_path / "cs" / "results")
    save_dataset(cs, tmp_path / "b.json", "coco")
    back = read_coco(tmp_path / "b.json")
    for a, b in zip(coco.images, back.images):
        assert [(coco.categories[i.category_id], i.score) for i in a.instances] == \
            [(back.categories[i.category_id], i.score) for i in b.instances]
        assert all((x.mask == y.mask).all() for x, y in zip(a.instances, b.instances))


def _ground_truth_round_trip(dataset: Dataset, folder: Path, **options) -> tuple[Dataset, list]:
    """COCO -> Cityscapes -> COCO of ground truth; returns the dataset read back and the overlaps reported."""
    write_coco(dataset, folder / "a.json")
    overlaps = []
    save_dataset(read_coco(folder / "a.json"), folder / "cs", "cityscapes", overlaps=overlaps, **options)
    save_dataset(load_dataset(folder / "cs"), folder / "b.json", "coco")
    return read_coco(folder / "b.json"), overlaps


def _by_label(record: ImageRecord) -> list[tuple[int, np.ndarray]]:
    """(category id, mask) per instance, in the order the Cityscapes reader gives (by label, then number)."""
    return sorted(((i.category_id, i.mask) for i in record.instances), key=lambda item: item[0])


def test_ground_truth_round_trip_is_exact_without_overlaps(tmp_path):
    source = make_dataset(tmp_path / "src")
    back, overlaps = _ground_truth_round_trip(source, tmp_path)
    assert overlaps == []
    cs_ids = {1: 24, 2: 26}  # person, car
    for a, b in zip(source.images, back.images):
        assert [(cs_ids[c], m.sum()) for c, m in _by_label(a)] == [(c, m.sum()) for c, m in _by_label(b)]
        assert all((x == y).all() for (_, x), (_, y) in zip(_by_label(a), _by_label(b)))


@pytest.mark.parametrize("overlap", ["later", "smaller"])
def test_overlaps_are_reported_and_the_chosen_instance_keeps_them(tmp_path, overlap):
    source = make_dataset(tmp_path / "src", names=("a_000000_000001",))
    record = source.images[0]
    car = record.instances[1].mask  # the 31 x 31 box at (60, 10)
    small = np.zeros((H, W), bool)
    small[30:50, 80:95] = True  # a smaller car (20 x 15), drawn after it, 11 x 11 pixels over it
    record.instances.insert(2, Instance.from_mask(small, 2))
    shared = int((car & small).sum())
    assert shared == 121
    back, overlaps = _ground_truth_round_trip(source, tmp_path, overlap=overlap)
    assert [(o.image.name, o.instance, o.label, o.lost, o.area) for o in overlaps] == \
        [("a_000000_000001.png", 1, "car", shared, int(car.sum()))]
    masks = [m for c, m in _by_label(back.images[0]) if c == 26]
    # both rules give the shared pixels to the small car here (it is later and smaller)
    assert any((m == small).all() for m in masks) and any((m == car & ~small).all() for m in masks)

    # the other way round: the small car first, so "later" gives the shared pixels to the big one
    record.instances.insert(1, record.instances.pop(2))
    back, overlaps = _ground_truth_round_trip(source, tmp_path / "swapped", overlap=overlap)
    loser, winner = (small, car) if overlap == "later" else (car, small)
    assert [(o.instance, o.lost, o.area) for o in overlaps] == \
        [(1 if overlap == "later" else 2, shared, int(loser.sum()))]
    masks = [m for c, m in _by_label(back.images[0]) if c == 26]
    assert any((m == winner).all() for m in masks) and any((m == loser & ~winner).all() for m in masks)


def test_unmapped_category_is_an_error_and_a_map_fixes_it(tmp_path):
    dataset = make_dataset(tmp_path / "src")
    dataset.categories = {1: "pedestrian crossing", 2: "car"}
    with pytest.raises(DatasetError, match="pedestrian crossing"):
        write_cityscapes(dataset, tmp_path / "cs")
    assert not (tmp_path / "cs").exists()
    write_cityscapes(dataset, tmp_path / "cs", category_map={"pedestrian crossing": "rider"})
    assert sorted({i.category_id for r in read_cityscapes(tmp_path / "cs").images for i in r.instances}) == [25, 26]
    write_cityscapes(dataset, tmp_path / "cs2", category_map={1: "-"})
    assert {i.category_id for r in read_cityscapes(tmp_path / "cs2").images for i in r.instances} == {26}
    with pytest.raises(DatasetError, match=r"category map: 'persn' matches no category name or id of the dataset "
                                           r"\(its categories: pedestrian crossing \(1\), car \(2\)\)"):
        write_cityscapes(dataset, tmp_path / "cs3", category_map={1: "-", "persn": "-"})
    assert not (tmp_path / "cs3").exists()


def test_hidden_instance_is_an_error(tmp_path):
    dataset = make_dataset(tmp_path / "src", names=("a_000000_000001",))
    record = dataset.images[0]
    record.instances.append(Instance.from_mask(record.instances[0].mask, 2))
    record.instances.append(Instance.from_mask(record.instances[0].mask, 1))
    with pytest.raises(DatasetError, match=r"instance 0 \(person\) is completely covered"):
        write_cityscapes(dataset, tmp_path / "cs")


def test_bad_results_lines_and_orphans_name_the_file(tmp_path):
    write_cityscapes(make_dataset(tmp_path / "src"), tmp_path / "cs")
    images = read_cityscapes(tmp_path / "cs")
    results = tmp_path / "res"
    results.mkdir()
    (results / "testcity_000000_000001_pred.txt").write_text("m.png 26 0.5\n")
    with pytest.raises(DatasetError, match=r"line 1: mask .*m.png not found"):
        read_cityscapes_results(results, images)
    cv2.imwrite(str(results / "m.png"), np.zeros((H, W), np.uint8))
    (results / "testcity_000000_000001_pred.txt").write_text("m.png 7 0.5\n")
    with pytest.raises(DatasetError, match="label id 7 is not a Cityscapes class"):
        read_cityscapes_results(results, images)
    for label, score in [("1e400", "0.5"), ("26.5", "0.5"), ("26", "nan"), ("x", "0.5")]:  # 1e400 crashed (fuzz)
        (results / "testcity_000000_000001_pred.txt").write_text(f"m.png {label} {score}\n")
        with pytest.raises(DatasetError, match=f"line 1: labelId must be an integer and score a finite number, "
                                               f"got '{label}' '{score}'"):
            read_cityscapes_results(results, images)
    cv2.imwrite(str(results / "m.png"), np.zeros((H + 1, W), np.uint8))
    (results / "testcity_000000_000001_pred.txt").write_text("m.png 26 0.5\n")
    with pytest.raises(DatasetError, match="m.png is 128x65"):
        read_cityscapes_results(results, images)
    (results / "testcity_000000_000001_pred.txt").unlink()
    (results / "othercity_000000_000001_pred.txt").write_text("")
    with pytest.raises(DatasetError, match="othercity.*no known image"):
        read_cityscapes_results(results, images)


def test_ground_truth_without_image_is_an_error(tmp_path):
    write_cityscapes(make_dataset(tmp_path / "src"), tmp_path / "cs")
    next((tmp_path / "cs" / "leftImg8bit").rglob("*_000002_leftImg8bit.png")).unlink()
    with pytest.raises(DatasetError, match="000002_gtFine.*image was not found"):
        read_cityscapes(tmp_path / "cs")
    errors = []
    assert len(read_cityscapes(tmp_path / "cs", errors=errors).images) == 1 and len(errors) == 2


def test_categories_are_the_instance_classes(tmp_path):
    write_cityscapes(make_dataset(tmp_path / "src"), tmp_path / "cs")
    assert read_cityscapes(tmp_path / "cs").categories == INSTANCE_CATEGORIES
