"""`bpr-studio refine` end to end on a small COCO dataset with a weights file made here."""

import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from bpr_studio.cli import main
from bpr_studio.core.model import build_model, save_weights
from bpr_studio.io.dataset import encode_rle


@pytest.fixture()
def dataset(tmp_path):
    """Two 60x80 images, each with two predicted discs, as a COCO annotations + results pair."""
    rng = np.random.default_rng(1)
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    yy, xx = np.mgrid[:60, :80]
    images, results = [], []
    for image_id in (1, 2):
        name = f"img{image_id}.png"
        cv2.imwrite(str(images_dir / name), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
        images.append({"id": image_id, "file_name": name, "width": 80, "height": 60})
        for cx in (25, 55):
            mask = (yy - 30) ** 2 + (xx - cx) ** 2 < 12 ** 2
            results.append({"image_id": image_id, "category_id": 1, "score": 0.9, "segmentation": encode_rle(mask)})
    annotations = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "gt.json").write_text(json.dumps(annotations))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    torch.manual_seed(0)
    save_weights(tmp_path / "w.pt", build_model("hr18s"), "hr18s")
    return tmp_path


def refine_args(root, out="refined.json"):
    return ["refine", "--images", str(root / "images"), "--annotations", str(root / "gt.json"),
            "--predictions", str(root / "pred.json"), "--out", str(root / out), "--weights", str(root / "w.pt"),
            "--patch-size", "16", "--input-size", "32", "--batch-size", "5", "--min-size", "0",
            "--device", "cpu"]


def test_refine_writes_coco_results(dataset):
    assert main(refine_args(dataset)) == 0
    refined = json.loads((dataset / "refined.json").read_text())
    coarse = json.loads((dataset / "pred.json").read_text())
    assert len(refined) == len(coarse) == 4
    for before, after in zip(coarse, refined):
        assert after["image_id"] == before["image_id"] and after["score"] == before["score"]
        rle = {"size": after["segmentation"]["size"], "counts": after["segmentation"]["counts"].encode()}
        mask = mask_utils.decode(rle).astype(bool)
        assert mask.shape == (60, 80)
        np.testing.assert_allclose(after["bbox"], mask_utils.toBbox(rle), atol=1e-6)
        old = mask_utils.decode({"size": before["segmentation"]["size"],
                                 "counts": before["segmentation"]["counts"].encode()}).astype(bool)
        far = cv2.distanceTransform((~(old ^ np.roll(old, 1, 0))).astype(np.uint8), cv2.DIST_L2, 3) > 20
        np.testing.assert_array_equal(mask[far], old[far])  # far from every boundary: untouched


def test_missing_image_is_reported_and_the_rest_refined(dataset, capsys):
    (dataset / "images" / "img2.png").unlink()
    assert main(refine_args(dataset)) == 1
    err = capsys.readouterr().err
    assert "img2.png" in err and "not found" in err
    refined = json.loads((dataset / "refined.json").read_text())
    assert {r["image_id"] for r in refined} == {1}


def test_mask_of_the_wrong_size_is_reported(dataset, capsys):
    results = json.loads((dataset / "pred.json").read_text())
    results[0]["segmentation"] = encode_rle(np.ones((30, 40), bool))
    (dataset / "pred.json").write_text(json.dumps(results))
    assert main(refine_args(dataset)) == 1
    err = capsys.readouterr().err
    assert "result 0" in err and "img1.png" in err
    assert len(json.loads((dataset / "refined.json").read_text())) == 3


def test_missing_weights_file_is_a_clear_error(dataset, capsys):
    (dataset / "w.pt").unlink()
    assert main(refine_args(dataset)) == 2
    assert "w.pt" in capsys.readouterr().err
