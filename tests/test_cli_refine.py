"""`bpr-studio refine` end to end on a small COCO dataset with a weights file made here."""

import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from bpr_studio.cli import main
from bpr_studio.core.model import build_model, save_weights
from bpr_studio.core.rle import encode_rle


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


def decoded(entry):
    return mask_utils.decode({"size": entry["segmentation"]["size"],
                              "counts": entry["segmentation"]["counts"].encode()}).astype(bool)


def test_missing_image_is_reported_once_and_its_coarse_masks_kept(dataset, capsys):
    (dataset / "images" / "img2.png").unlink()
    assert main(refine_args(dataset)) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "img2.png" in line]
    assert len(lines) == 1 and "not found" in lines[0] and "2 coarse masks written unchanged" in lines[0]
    coarse = json.loads((dataset / "pred.json").read_text())
    refined = json.loads((dataset / "refined.json").read_text())
    assert [r["image_id"] for r in refined] == [1, 1, 2, 2]
    for before, after in zip(coarse[2:], refined[2:]):
        np.testing.assert_array_equal(decoded(after), decoded(before))


def test_garbage_image_of_a_folder_keeps_its_coarse_masks(dataset, capsys):
    """Without --annotations: the results name their files; an unreadable one is one message."""
    results = json.loads((dataset / "pred.json").read_text())
    for r in results:
        r["file_name"] = f"img{r['image_id']}.png"
    (dataset / "pred.json").write_text(json.dumps(results))
    (dataset / "images" / "img2.png").write_bytes(b"not a png")
    args = refine_args(dataset)
    i = args.index("--annotations")
    del args[i:i + 2]
    assert main(args) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "img2.png" in line]
    assert len(lines) == 1 and "2 coarse masks written unchanged" in lines[0], err
    refined = json.loads((dataset / "refined.json").read_text())
    assert len(refined) == 4 and refined[2:] == results[2:]


def test_mask_of_the_wrong_size_is_reported_and_written_unchanged(dataset, capsys):
    results = json.loads((dataset / "pred.json").read_text())
    results[0]["segmentation"] = encode_rle(np.ones((30, 40), bool))
    (dataset / "pred.json").write_text(json.dumps(results))
    assert main(refine_args(dataset)) == 1
    err = capsys.readouterr().err
    assert "result 0" in err and "img1.png" in err
    refined = json.loads((dataset / "refined.json").read_text())
    assert len(refined) == 4 and refined[0] == results[0]


def test_no_output_file_when_every_input_is_bad(dataset, capsys):
    for name in ("img1.png", "img2.png"):
        (dataset / "images" / name).unlink()
    assert main(refine_args(dataset)) == 1
    err = capsys.readouterr().err
    assert "not written" in err and err.count("not found") == 2
    assert not (dataset / "refined.json").exists()
    assert not list(dataset.glob(".refined.json*"))  # no shards or temporary files left


@pytest.mark.parametrize("out", ["missing_dir_is_a_file/x.json", "."])
def test_unwritable_out_is_reported_before_any_work(dataset, capsys, monkeypatch, out):
    (dataset / "missing_dir_is_a_file").write_text("")
    import bpr_studio.pipeline.job as job

    monkeypatch.setattr(job, "read_job", None)  # reading would fail loudly: the check comes first
    args = refine_args(dataset)
    args[args.index("--out") + 1] = str(dataset / out) if out != "." else str(dataset)
    assert main(args) == 2
    assert str(dataset) in capsys.readouterr().err


def test_refine_prints_patches_rate_and_kept_small(dataset, capsys):
    args = refine_args(dataset)
    args[args.index("--min-size") + 1] = "30"  # the discs are 23 px wide
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "0 patches" in err and "patches/s" in err
    assert "4 instances kept their coarse mask for being smaller than --min-size 30 px" in err
    assert main(refine_args(dataset)) == 0
    err = capsys.readouterr().err
    assert "0 instances kept their coarse mask" in err and " 0 patches" not in err
    assert "settings other than the defaults: patch_size 16, input_size 32, batch_size 5, min_size 0" in err


def test_missing_weights_file_is_a_clear_error(dataset, capsys):
    (dataset / "w.pt").unlink()
    assert main(refine_args(dataset)) == 2
    assert "w.pt" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["serial", "ray"])
def test_corrupt_weights_file_is_one_line_before_any_engine_starts(dataset, capsys, engine):
    (dataset / "w.pt").write_bytes(b"not a weights file")
    assert main(refine_args(dataset) + ["--engine", engine]) == 2
    err = capsys.readouterr().err
    assert "w.pt: not a BPR Studio weights file" in err and "Traceback" not in err
    assert "refining on Ray" not in err  # the Ray engine never started


@pytest.mark.parametrize("given, expected", [([], True), (["--attached-only", "no"], False),
                                             (["--attached-only", "YES"], True), (["--attached-only", "off"], False)])
def test_refiner_options_fill_the_config(given, expected):
    from bpr_studio.cli import build_parser, refiner_config
    from bpr_studio.core.config import RefinerConfig

    args = build_parser().parse_args(["refine", "--images", ".", "--annotations", "a.json", "--predictions", "p.json",
                                      "--out", "o.json", "--min-size", "0", *given])
    assert refiner_config(args) == RefinerConfig(min_size=0, attached_only=expected)


def test_margin_option(capsys):
    from bpr_studio.cli import build_parser, main, refiner_config
    from bpr_studio.core.config import RefinerConfig

    base = ["refine", "--images", ".", "--annotations", "a.json", "--predictions", "p.json", "--out", "o.json"]
    assert refiner_config(build_parser().parse_args(base + ["--margin", "0.1"])) == RefinerConfig(margin=0.1)
    assert main(base + ["--margin", "0.7"]) != 0
    err = capsys.readouterr().err
    assert "margin must be in [0, 0.5), got 0.7" in err and "Traceback" not in err


def test_max_shift_and_snap_options(capsys):
    from bpr_studio.cli import build_parser, main, refiner_config
    from bpr_studio.core.config import RefinerConfig

    base = ["refine", "--images", ".", "--annotations", "a.json", "--predictions", "p.json", "--out", "o.json"]
    assert refiner_config(build_parser().parse_args(base)).max_shift == 0
    assert refiner_config(build_parser().parse_args(base + ["--max-shift", "3"])) == RefinerConfig(max_shift=3)
    assert main(base + ["--max-shift", "-2"]) != 0
    err = capsys.readouterr().err
    assert "max_shift must be >= 0 pixels (0: no limit), got -2" in err and "Traceback" not in err
    assert refiner_config(build_parser().parse_args(base + ["--snap", "2"])) == RefinerConfig(snap=2)
    assert main(base + ["--snap", "-1"]) != 0
    assert "snap must be >= 0 pixels (0: off), got -1" in capsys.readouterr().err


def test_a_bad_switch_value_is_refused(capsys):
    from bpr_studio.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["refine", "--images", ".", "--annotations", "a.json", "--predictions", "p.json",
                                   "--out", "o.json", "--attached-only", "maybe"])
    assert "expected yes or no, got 'maybe'" in capsys.readouterr().err


def test_mirror_option():
    from bpr_studio.cli import build_parser, refiner_config
    from bpr_studio.core.config import RefinerConfig

    base = ["refine", "--images", ".", "--annotations", "a.json", "--predictions", "p.json", "--out", "o.json"]
    assert refiner_config(build_parser().parse_args(base)).mirror  # on by default
    assert refiner_config(build_parser().parse_args(base + ["--mirror", "no"])) == RefinerConfig(mirror=False)
    assert refiner_config(build_parser().parse_args(base + ["--mirror", "yes"])) == RefinerConfig()


def test_weights_name_a_shipped_file_or_a_path(tmp_path):
    """--weights fast|precise|paper are the shipped files; anything else is a path; each shipped file
    is the family and input size its name says."""
    from bpr_studio.cli import build_parser
    from bpr_studio.core.config import SHIPPED_WEIGHTS
    from bpr_studio.core.model import load_weights

    base = ["refine", "--images", ".", "--annotations", "a.json", "--predictions", "p.json", "--out", "o.json"]
    expected = {"fast": ("lite0", 64), "precise": ("lite0", 128), "paper": ("hr18s", 128)}
    assert set(SHIPPED_WEIGHTS) == set(expected)
    for name, (arch, size) in expected.items():
        path = build_parser().parse_args(base + ["--weights", name]).weights
        assert path.name == SHIPPED_WEIGHTS[name] and path.is_file()
        info = load_weights(path)[1]
        assert (info["arch"], info["input_size"]) == (arch, size)
        assert info["int8"] == (name != "precise")  # the precise model's int8 graph lost quality: float32
    given = tmp_path / "precise"  # a file named like a shipped one is reached by its path
    assert build_parser().parse_args(base + ["--weights", str(given)]).weights == given
