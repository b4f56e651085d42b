"""Evaluation: AP through pycocotools, AF, per-instance IoU, the boundary oracle, and the eval/oracle CLI."""

import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bpr_studio.cli import main
from bpr_studio.core.evaluate import evaluate, instance_ious, oracle_mask, share_changed
from bpr_studio.io.coco import write_coco, write_coco_results
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance


def disk(center, radius, shape=(100, 120)):
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, center, radius, 1, -1)
    return m.astype(bool)


def scene():
    gts = [[Instance.from_mask(disk((30, 30), 20), 1), Instance.from_mask(disk((85, 60), 25), 2)],
           [Instance.from_mask(disk((60, 50), 30), 1)]]
    preds = [[Instance.from_mask(np.roll(disk((30, 30), 20), 2, 1), 1, score=0.9),
              Instance.from_mask(disk((85, 60), 22), 2, score=0.8),
              Instance.from_mask(disk((90, 20), 8), 1, score=0.3)],  # a false positive
             [Instance.from_mask(disk((60, 50), 30), 2, score=0.7)]]  # wrong class: a miss
    return gts, preds


def test_perfect_predictions_score_one():
    gts, _ = scene()
    preds = [[Instance.from_mask(g.mask, g.category_id, score=1.0) for g in image] for image in gts]
    s = evaluate([(100, 120)] * 2, gts, preds)
    assert s.ap == pytest.approx(1.0) and s.af == pytest.approx(1.0) and s.miou == pytest.approx(1.0)


def test_ap_equals_pycocotools_on_written_files(tmp_path):
    gts, preds = scene()
    records = [ImageRecord(path=tmp_path / f"{i}.png", width=120, height=100, instances=g, image_id=i + 1)
               for i, g in enumerate(gts)]
    for r in records:
        cv2.imwrite(str(r.path), np.zeros((100, 120, 3), np.uint8))
    gt_file = write_coco(Dataset(records, {1: "a", 2: "b"}), tmp_path / "gt.json")
    pred_records = [ImageRecord(path=r.path, width=120, height=100, instances=p, image_id=r.image_id)
                    for r, p in zip(records, preds)]
    pred_file = write_coco_results(Dataset(pred_records, {1: "a", 2: "b"}), tmp_path / "pred.json")
    coco = COCO(str(gt_file))
    ev = COCOeval(coco, coco.loadRes(json.loads(pred_file.read_text())), "segm")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    s = evaluate([(100, 120)] * 2, gts, preds)
    assert [s.ap, s.ap50, s.ap75] == pytest.approx(list(ev.stats[:3]))
    assert 0 < s.ap < 1 and 0 < s.af < 1


def test_instance_ious_and_share_changed():
    gts, preds = scene()
    ious = instance_ious(gts, preds)
    assert ious.shape == (3,) and ious[2] == 0.0  # wrong class counts as no prediction
    assert ious[1] == pytest.approx(22 ** 2 / 25 ** 2, abs=0.03)
    worse, better = share_changed(np.array([0.9, 0.9, 0.9, 0.9]), np.array([0.95, 0.895, 0.8, 0.9]))
    assert (worse, better) == (0.25, 0.25)


def test_oracle_replaces_only_the_band_near_the_predicted_boundary():
    gt = disk((60, 50), 30)
    pred = np.roll(gt, 2, axis=1)
    fixed = oracle_mask(pred, gt, 2)
    assert np.array_equal(fixed, gt)  # every error is within 2 px of the predicted boundary
    assert not np.array_equal(oracle_mask(pred, gt, 1), gt)
    far = disk((60, 50), 10)  # errors far from the predicted boundary stay
    assert np.array_equal(oracle_mask(disk((60, 50), 30), far, 2)[45:55, 55:65], np.ones((10, 10), bool))
    assert not oracle_mask(np.zeros_like(gt), gt, 3).any()


@pytest.fixture
def simulated(mini_dataset, tmp_path):
    """(annotations, coarse predictions that `bpr-studio simulate` made of them) of the mini dataset."""
    ann = mini_dataset / "data_dataset_coco" / "annotations.json"
    coarse = tmp_path / "coarse.json"
    assert main(["simulate", "--annotations", str(ann), "--out", str(coarse)]) == 0
    return ann, coarse


def _eval_rows(ann, tmp_path, *args: str) -> list[dict]:
    """The table `bpr-studio eval --annotations ann ARGS` writes as JSON."""
    table = tmp_path / "table.json"
    assert main(["eval", "--annotations", str(ann), *args, "--json", str(table)]) == 0
    return json.loads(table.read_text())


def test_eval_cli_prints_a_table_with_the_oracle(simulated, tmp_path):
    ann, coarse = simulated
    oracle = tmp_path / "oracle.json"
    assert main(["oracle", "--annotations", str(ann), "--predictions", str(coarse), "--dist", "2",
                 "--out", str(oracle)]) == 0
    rows = _eval_rows(ann, tmp_path, "--predictions", str(coarse), str(oracle), "--oracle", "2")
    assert [r["name"] for r in rows] == ["coarse.json", "oracle.json", "oracle 2px of coarse.json"]
    assert rows[1]["af"] == pytest.approx(rows[2]["af"]) and rows[1]["af"] > rows[0]["af"]
    assert rows[2]["worse"] == 0.0 and rows[2]["miou"] > rows[0]["miou"]
    assert [r.get("oracle") for r in rows] == [None, None, 2]
    # the flag repeated, as train's --predictions is, keeps every file (it used to keep the last only);
    # a predictions file named oracle*.json is not taken for an oracle row (that used to crash the table)
    repeated = _eval_rows(ann, tmp_path, "--predictions", str(coarse), "--predictions", str(oracle))
    assert [(r["name"], "oracle" in r) for r in repeated] == [("coarse.json", False), ("oracle.json", False)]


def test_signed_area_error_and_far_boundary_pixels():
    from bpr_studio.core.metrics import far_boundary_pixels

    gt = np.zeros((100, 120), bool)
    gt[20:80, 20:80] = True
    grown = gt.copy()
    grown[20:80, 80:95] = True  # a 15-px leak on one side
    n_far, n = far_boundary_pixels(grown, gt)
    assert n > 0 and 0 < n_far < n
    assert far_boundary_pixels(gt, gt) == (0, int(np.count_nonzero(gt)) - 58 * 58)
    gts = [[Instance.from_mask(gt, 1)]]
    s = evaluate([(100, 120)], gts, [[Instance.from_mask(grown, 1, score=0.9)]])
    assert s.area_error == pytest.approx(15 / 60) and s.far == pytest.approx(n_far / n)
    shrunk = np.zeros_like(gt)
    shrunk[20:80, 20:50] = True
    assert evaluate([(100, 120)], gts, [[Instance.from_mask(shrunk, 1, score=0.9)]]).area_error == pytest.approx(-0.5)


def test_grabcut_baseline_recovers_an_object_with_a_clear_edge():
    from bpr_studio.core.grabcut import grabcut_mask

    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
    gt = disk((80, 60), 35, (120, 160))
    image[gt] = rng.integers(180, 255, (int(gt.sum()), 3), dtype=np.uint8)
    coarse = np.roll(gt, 3, axis=1)
    out = grabcut_mask(image, coarse, band=3)
    from bpr_studio.core.metrics import mask_iou

    assert mask_iou(out, gt) > mask_iou(coarse, gt) and mask_iou(out, gt) > 0.97
    assert not grabcut_mask(image, np.zeros_like(gt)).any()


def test_eval_cli_grabcut_row_and_leak_columns(simulated, tmp_path):
    ann, coarse = simulated
    rows = _eval_rows(ann, tmp_path, "--predictions", str(coarse), "--baseline", "grabcut")
    assert [r["name"] for r in rows] == ["coarse.json", "coarse.json + grabcut (band 3px)"]
    assert all(-100 < r["area_error"] < 100 and 0 <= r["far"] <= 100 for r in rows)
    assert rows[1]["af"] != rows[0]["af"]
