"""Failure inspection: per-instance and per-patch quality, orderings, report files, ``bpr-studio inspect``.

The scene: one image with two objects; a bad coarse mask (the ellipse shifted 10 px) whose fake
refinement moves it further away with uncertain probabilities, and a good one (the disk eroded by
one pixel) whose fake refinement recovers the ground truth confidently.
"""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from bpr_studio.core.metrics import boundary_f_score, mask_iou
from bpr_studio.core.patches import boundary_patches, crop_boxes, reassemble
from bpr_studio.core.quality import (
    SMALL_AREA, MaskShapeError, got_worse, is_small, measure_image, measure_instance,
    measure_patches, rank_instances, worst_patches_first,
)
from bpr_studio.core.figures import draw_scatter, gallery_figure, patch_rows, scatter_figure
from bpr_studio.core.rle import encode_rle
from bpr_studio.io.report import CSV_COLUMNS, write_figure_png, write_quality_csv

H, W, PATCH = 96, 128, 32


def shifted(mask: np.ndarray, dx: int) -> np.ndarray:
    """(H, W) bool mask moved dx pixels to the right (zero fill)."""
    out = np.zeros_like(mask)
    out[:, dx:] = mask[:, :-dx]
    return out


def make_scene() -> SimpleNamespace:
    """Image (H, W, 3) uint8, gt/coarse/refined (2, H, W) bool, boxes and probs per instance."""
    yy, xx = np.mgrid[:H, :W]
    gt_a = ((xx - 38) / 22.0) ** 2 + ((yy - 46) / 16.0) ** 2 <= 1.0
    gt_b = (xx - 96) ** 2 + (yy - 50) ** 2 <= 17 ** 2
    image = np.full((H, W, 3), 40, np.uint8)
    image[..., 2] = (xx * 2).astype(np.uint8)
    image[gt_a] = (220, 60, 60)
    image[gt_b] = (60, 220, 60)
    bad = shifted(gt_a, 10)
    good = cv2.erode(gt_b.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    boxes = [boundary_patches(bad, PATCH, 0.25), boundary_patches(good, PATCH, 0.25)]
    # bad: the refiner drags the mask 6 px further right, unsure (0.35 / 0.65); good: sure ground truth
    probs = [
        (crop_boxes(shifted(gt_a, 16), boxes[0]) * 0.3 + 0.35).astype(np.float32),
        (crop_boxes(gt_b, boxes[1]) * 0.9 + 0.05).astype(np.float32),
    ]
    coarse = np.stack([bad, good])
    refined = np.stack([reassemble(c, b, p) for c, b, p in zip(coarse, boxes, probs)])
    return SimpleNamespace(image=image, gt=np.stack([gt_a, gt_b]), gt_categories=[1, 2], coarse=coarse,
                           categories=[1, 2], refined=refined, boxes=boxes, probs=probs)


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def records(scene):
    return measure_image(list(scene.coarse), scene.categories, list(scene.refined), scene.boxes, scene.probs,
                         list(scene.gt), scene.gt_categories, [False, False], image_index=0, image_name="scene.png")


def test_figures_equal_full_image_metrics(scene, records):
    for j, q in enumerate(records):
        assert q.gt_index == j
        assert q.iou_before == pytest.approx(mask_iou(scene.coarse[j], scene.gt[j]))
        assert q.iou_after == pytest.approx(mask_iou(scene.refined[j], scene.gt[j]))
        assert q.bf_before == pytest.approx(boundary_f_score(scene.coarse[j], scene.gt[j], 1.0))
        assert q.bf_after == pytest.approx(boundary_f_score(scene.refined[j], scene.gt[j], 1.0))
        assert q.area == np.count_nonzero(scene.coarse[j])
        assert q.n_patches == len(scene.boxes[j])
    bad, good = records
    assert bad.iou_change < 0 < good.iou_change
    assert good.iou_after == 1.0 and good.bf_after == 1.0


def test_uncertainty_and_changed_share(scene, records):
    bad, good = records
    assert bad.uncertain_share == 1.0  # every probability is 0.35 or 0.65
    assert good.uncertain_share == 0.0
    region = np.zeros((H, W), bool)
    for x0, y0, x1, y1 in scene.boxes[1]:
        region[y0:y1, x0:x1] = True
    changed = scene.coarse[1] != scene.refined[1]
    assert good.changed_share == pytest.approx(np.count_nonzero(changed & region) / np.count_nonzero(region))
    assert 0 < good.changed_share < bad.changed_share


def test_bad_instance_sorts_first_and_filters(records):
    bad, good = records
    assert rank_instances([good, bad], "worst_change")[0] is bad
    assert rank_instances([good, bad], "most_uncertain")[0] is bad
    assert rank_instances([good, bad], "worst_change", "got_worse") == [bad]
    assert got_worse(bad) and not got_worse(good)
    assert rank_instances([bad, good], "image_order") == [bad, good]
    small = measure_instance(np.pad(np.ones((10, 10), bool), 5), instance_index=2)
    assert is_small(small) and not is_small(bad) and bad.area >= SMALL_AREA > good.area
    assert rank_instances([bad, small, good], "image_order", "small") == [good, small]
    with pytest.raises(ValueError, match="unknown sort"):
        rank_instances(records, "best")


def test_without_ground_truth_ranks_by_uncertainty(scene):
    found = measure_image(list(scene.coarse), scene.categories, list(scene.refined), scene.boxes, scene.probs)
    assert all(q.iou_before is None and q.iou_change is None and q.gt_index is None for q in found)
    assert rank_instances(found[::-1], "worst_change")[0].instance_index == 0
    assert not any(got_worse(q) for q in found)


def test_matching_uses_same_category_and_skips_crowd(scene):
    def matched(category, crowd=(False, False)):
        q = measure_image([scene.coarse[0]], [category], gt_masks=list(scene.gt), gt_category_ids=[1, 2],
                          gt_iscrowd=list(crowd))[0]
        return q.gt_index, q.iou_before

    assert matched(1) == (0, pytest.approx(mask_iou(scene.coarse[0], scene.gt[0])))
    assert matched(2) == (None, 0.0)
    assert matched(1, crowd=(True, False))[0] is None
    with pytest.raises(MaskShapeError, match="ground-truth mask 1 is 10x5 pixels, expected 128x96"):
        measure_image([scene.coarse[0]], [1], gt_masks=[scene.gt[0], np.zeros((5, 10), bool)], gt_category_ids=[1, 2])
    with pytest.raises(MaskShapeError, match="refined mask"):
        measure_instance(scene.coarse[0], scene.refined[0][1:])
    unmatched = measure_image([scene.coarse[0]], [3], [scene.refined[0]], [scene.boxes[0]], [scene.probs[0]],
                              list(scene.gt), [1, 2], [False, False])[0]
    assert unmatched.gt_index is None and unmatched.iou_before == 0.0 and unmatched.iou_after == 0.0


def test_patches_one_per_box_worst_first(scene):
    patches = measure_patches(scene.coarse[0], scene.refined[0], scene.boxes[0], scene.probs[0], scene.gt[0])
    assert [p.index for p in patches] == list(range(len(scene.boxes[0])))
    x0, y0, x1, y1 = scene.boxes[0][0]
    assert patches[0].iou_before == pytest.approx(mask_iou(scene.coarse[0][y0:y1, x0:x1], scene.gt[0][y0:y1, x0:x1]))
    assert patches[0].iou_after == pytest.approx(mask_iou(scene.refined[0][y0:y1, x0:x1], scene.gt[0][y0:y1, x0:x1]))
    ordered = worst_patches_first(patches)
    changes = [p.iou_change for p in ordered]
    assert changes == sorted(changes)
    rows = patch_rows(scene.image, scene.coarse[0], scene.refined[0], ordered, scene.probs[0], scene.gt[0])
    assert len(rows) == len(scene.boxes[0])
    assert list(rows[0].tiles) == ["image", "coarse", "probability", "refined", "ground truth"]
    assert all(t.shape == (PATCH, PATCH, 3) and t.dtype == np.uint8 for t in rows[0].tiles.values())
    no_truth = patch_rows(scene.image, scene.coarse[0], scene.refined[0], ordered, None, None)
    assert list(no_truth[0].tiles) == ["image", "coarse", "refined"]


def test_scatter_has_a_dot_per_instance_at_its_ious(records):
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    shown = draw_scatter(ax, records)
    assert shown == list(records)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[q.iou_before, q.iou_after] for q in records])


def assert_png_not_blank(path):
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 10


def test_report_files(tmp_path, scene, records):
    csv_path = write_quality_csv(tmp_path / "q.csv", records, {1: "ellipse", 2: "disk"})
    rows = list(csv.DictReader(csv_path.open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 2
    assert rows[0]["category"] == "ellipse" and float(rows[0]["iou_change"]) == pytest.approx(records[0].iou_change,
                                                                                               abs=1e-6)
    assert_png_not_blank(write_figure_png(tmp_path / "s.png", scatter_figure(records)))
    patches = worst_patches_first(measure_patches(scene.coarse[0], scene.refined[0], scene.boxes[0], scene.probs[0],
                                                  scene.gt[0]))
    rows = patch_rows(scene.image, scene.coarse[0], scene.refined[0], patches, scene.probs[0], scene.gt[0])
    assert_png_not_blank(write_figure_png(tmp_path / "g.png", gallery_figure(rows, "title")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "q.csv", "s.png"]  # no temporary files left


# ---- the command line ------------------------------------------------------------------------

def write_scene_files(folder, scene, refined: bool):
    """images/scene.png, gt.json, pred.json (and refined.json) for the scene."""
    (folder / "images").mkdir()
    cv2.imwrite(str(folder / "images" / "scene.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
    gt = {
        "images": [{"id": 7, "file_name": "scene.png", "width": W, "height": H}],
        "annotations": [{"id": j + 1, "image_id": 7, "category_id": c, "segmentation": encode_rle(m),
                         "area": int(m.sum()), "bbox": [float(v) for v in cv2.boundingRect(m.astype(np.uint8))],
                         "iscrowd": 0} for j, (m, c) in enumerate(zip(scene.gt, scene.gt_categories))],
        "categories": [{"id": 1, "name": "ellipse"}, {"id": 2, "name": "disk"}],
    }
    (folder / "gt.json").write_text(json.dumps(gt))

    def results(masks):
        return [{"image_id": 7, "category_id": c, "segmentation": encode_rle(m), "score": 0.9}
                for m, c in zip(masks, scene.categories)]

    (folder / "pred.json").write_text(json.dumps(results(scene.coarse)))
    if refined:
        (folder / "refined.json").write_text(json.dumps(results(scene.refined)))


def test_cli_with_refined_results(tmp_path, scene, capsys):
    from bpr_studio.cli import main

    write_scene_files(tmp_path, scene, refined=True)
    out = tmp_path / "report"
    argv = ["inspect", "--images", str(tmp_path / "images"), "--annotations", str(tmp_path / "gt.json"),
            "--predictions", str(tmp_path / "pred.json"), "--refined", str(tmp_path / "refined.json"),
            "--out", str(out), "--patch-size", str(PATCH), "--worst", "1"]
    assert main(argv) == 0
    assert "got worse: 1 (50.0 %)" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "quality.csv").open()))
    assert len(rows) == 2
    for j, row in enumerate(rows):
        assert float(row["iou_before"]) == pytest.approx(mask_iou(scene.coarse[j], scene.gt[j]), abs=1e-6)
        assert float(row["iou_after"]) == pytest.approx(mask_iou(scene.refined[j], scene.gt[j]), abs=1e-6)
        assert float(row["bf_after"]) == pytest.approx(boundary_f_score(scene.refined[j], scene.gt[j]), abs=1e-6)
        assert row["uncertain_share"] == ""  # no probabilities in a results file
    assert sorted(p.name for p in out.iterdir()) == ["gallery_01_scene_0.png", "quality.csv", "scatter.png"]
    assert_png_not_blank(out / "scatter.png")
    assert_png_not_blank(out / "gallery_01_scene_0.png")


def test_cli_refines_with_weights(tmp_path, scene):
    from bpr_studio.cli import main
    from bpr_studio.core.model import build_model, save_weights

    write_scene_files(tmp_path, scene, refined=False)
    save_weights(tmp_path / "random.pt", build_model("hr18s"), "hr18s")
    out = tmp_path / "report"
    argv = ["inspect", "--images", str(tmp_path / "images"), "--annotations", str(tmp_path / "gt.json"),
            "--predictions", str(tmp_path / "pred.json"), "--weights", str(tmp_path / "random.pt"),
            "--device", "cpu", "--out", str(out), "--patch-size", str(PATCH), "--min-size", "0", "--worst", "2"]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "quality.csv").open()))
    assert [row["instance_index"] for row in rows] == ["0", "1"]
    assert all(0.0 <= float(row["uncertain_share"]) <= 1.0 and row["iou_after"] for row in rows)
    assert len(list(out.glob("gallery_*.png"))) == 2


def test_cli_rejects_mismatched_refined_file(tmp_path, scene, capsys):
    from bpr_studio.cli import main

    write_scene_files(tmp_path, scene, refined=True)
    data = json.loads((tmp_path / "refined.json").read_text())
    (tmp_path / "refined.json").write_text(json.dumps(data[:1]))
    argv = ["inspect", "--images", str(tmp_path / "images"), "--annotations", str(tmp_path / "gt.json"),
            "--predictions", str(tmp_path / "pred.json"), "--refined", str(tmp_path / "refined.json"),
            "--out", str(tmp_path / "report")]
    assert main(argv) == 2
    assert "refined.json" in capsys.readouterr().err
