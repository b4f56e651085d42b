"""load_dataset / save_dataset across formats, per-image error collection, atomic writes, the convert command."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from bpr_studio.cli import main
from bpr_studio.io.atomic import atomic_write_json, atomic_write_text
from bpr_studio.io.coco import read_coco
from bpr_studio.io.errors import DatasetError
from bpr_studio.io.formats import guess_format, load_dataset, save_dataset


def test_guesses_each_format(mini_dataset, tmp_path):
    assert guess_format(mini_dataset / "data_dataset_coco" / "annotations.json") == "coco"
    assert guess_format(mini_dataset / "data_dataset_coco") == "coco"
    assert guess_format(mini_dataset / "data_annotated") == "labelme"
    assert guess_format(mini_dataset / "data_annotated" / "scene_1.json") == "labelme"
    save_dataset(load_dataset(mini_dataset / "data_annotated"), tmp_path / "cs", "cityscapes",
                 category_map={"bottle": "-", "chair": "-", "sofa": "-", "__ignore__": "-"})
    assert guess_format(tmp_path / "cs") == "cityscapes"
    # make_mini_dataset.IMAGES without bottle, chair, sofa and __ignore__: 2 persons; 4 persons; 2 buses and a car
    assert [len(r.instances) for r in load_dataset(tmp_path / "cs").images] == [2, 4, 3]


def test_folder_guess_reads_the_json_files_in_it(mini_dataset, tmp_path):
    from bpr_studio import RESOURCES

    # the shipped demo: a COCO annotations file beside a COCO results list and an images/ folder
    assert guess_format(RESOURCES / "demo") == "coco"
    assert sum(len(r.instances) for r in load_dataset(RESOURCES / "demo").images) == 12
    coco = tmp_path / "coco"
    shutil.copytree(mini_dataset / "data_dataset_coco", coco)
    (coco / "results.json").write_text("[]")
    assert guess_format(coco) == "coco"
    # a labelme file beside a COCO file: the folder is labelme
    shutil.copy(mini_dataset / "data_annotated" / "scene_1.json", coco / "scene_1.json")
    assert guess_format(coco) == "labelme"
    (coco / "scene_1.json").unlink()
    shutil.copy(coco / "annotations.json", coco / "other.json")
    with pytest.raises(DatasetError, match="2 COCO files found .annotations.json, other.json.; name one"):
        load_dataset(coco)
    # the only COCO file truncated: an error naming it, not the bare images without their masks
    (coco / "other.json").unlink()
    (coco / "annotations.json").write_text('{"images": [')
    assert guess_format(coco) == "labelme"
    with pytest.raises(DatasetError, match="no readable COCO annotations file; .*annotations.json: not valid JSON"):
        load_dataset(coco, format="coco")


def test_coco_with_images_folder_and_predictions(mini_dataset, tmp_path):
    images = mini_dataset / "data_dataset_coco" / "JPEGImages"
    gt = load_dataset(mini_dataset / "data_dataset_coco" / "annotations.json")
    # an annotations file whose file_name is relative to another folder
    data = json.loads((mini_dataset / "data_dataset_coco" / "annotations.json").read_text())
    for image in data["images"]:
        image["file_name"] = image["file_name"].split("/")[-1]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    moved = load_dataset(images, annotations=tmp_path / "ann.json")
    assert [r.path for r in moved.images] == [r.path for r in gt.images]
    # predictions on a bare folder of images (the refine CLI's case)
    for record in gt.images:
        for inst in record.instances:
            inst.score = 0.75
    save_dataset(gt, tmp_path / "res.json", "coco", results=True)
    predictions = load_dataset(images, format="coco", predictions=tmp_path / "res.json")
    # the 3, 6 and 3 instances of make_mini_dataset.IMAGES that are not __ignore__
    assert sorted(len(r.instances) for r in predictions.images) == [3, 3, 6]
    assert all(i.score == 0.75 for r in predictions.images for i in r.instances)


def test_corrupt_image_is_listed_and_the_rest_loads(mini_dataset, tmp_path):
    shutil.copytree(mini_dataset / "data_dataset_coco", tmp_path / "coco")
    broken = tmp_path / "coco" / "JPEGImages" / "scene_3.jpg"
    os.chmod(broken, 0o644)
    broken.write_bytes(b"\xff\xd8 truncated")
    errors = []
    dataset = load_dataset(tmp_path / "coco" / "annotations.json", errors=errors)
    assert [r.path.name for r in dataset.images] == ["scene_1.jpg", "scene_2.jpg"]
    assert [(p.name, "not a readable image" in m) for p, m in errors] == [("scene_3.jpg", True)]
    with pytest.raises(DatasetError, match="scene_3.jpg: not a readable image"):
        load_dataset(tmp_path / "coco" / "annotations.json")


def test_atomic_write_keeps_the_old_file_when_it_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"v": float("nan")})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_convert_command_for_each_format(mini_dataset, tmp_path, capsys):
    src = str(mini_dataset / "data_annotated")
    assert main(["convert", "--from", "labelme", src, "--to", "coco", str(tmp_path / "a.json"), "--polygons"]) == 0
    assert sum(len(r.instances) for r in read_coco(tmp_path / "a.json").images) == 4 + 7 + 3  # __ignore__ as crowd
    assert main(["convert", "--from", "coco", str(tmp_path / "a.json"), "--to", "labelme", str(tmp_path / "lm")]) == 0
    assert sorted(p.name for p in (tmp_path / "lm").glob("*.json")) == ["scene_1.json", "scene_2.json",
                                                                       "scene_3.json"]
    assert main(["convert", "--from", "labelme", str(tmp_path / "lm"), "--to", "cityscapes", str(tmp_path / "cs")]) == 2
    assert "'bottle' (id 2)" in capsys.readouterr().err
    assert not (tmp_path / "cs").exists()
    maps = sum((["--category-map", f"{n}=-"] for n in ("bottle", "chair", "sofa", "__ignore__")), [])
    assert main(["convert", "--from", "labelme", str(tmp_path / "lm"), "--to", "cityscapes", str(tmp_path / "cs")] + maps) == 0
    assert main(["convert", "--from", "cityscapes", str(tmp_path / "cs"), "--to", "coco", str(tmp_path / "b")]) == 0
    names = {d["name"] for d in json.loads((tmp_path / "b" / "annotations.json").read_text())["categories"]}
    assert {"person", "bus", "car"} <= names


def test_convert_skip_bad_lists_problems(mini_dataset, tmp_path, capsys):
    shutil.copytree(mini_dataset / "data_annotated", tmp_path / "lm")
    os.chmod(tmp_path / "lm" / "scene_2.json", 0o644)
    (tmp_path / "lm" / "scene_2.json").write_text("{")
    args = ["convert", "--from", "labelme", str(tmp_path / "lm"), "--to", "coco", str(tmp_path / "a.json")]
    assert main(args) == 2
    assert main(args + ["--skip-bad"]) == 1
    assert "skipped: " in capsys.readouterr().err
    # the broken JSON's image is left out too, so no export can blank that JSON
    assert [r.path.name for r in read_coco(tmp_path / "a.json").images] == ["scene_1.jpg", "scene_3.jpg"]


def test_images_folder_without_annotations(tmp_path):
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"{k}.png"), np.zeros((4, 5, 3), np.uint8))
    dataset = load_dataset(tmp_path, format="coco")
    assert [(r.width, r.height, r.image_id, r.instances) for r in dataset.images] == [(5, 4, k, []) for k in range(3)]


def test_convert_a_results_file_with_its_images(mini_dataset, tmp_path):
    dataset = load_dataset(mini_dataset / "data_dataset_coco" / "annotations.json")
    for record in dataset.images:
        for inst in record.instances:
            inst.score = 0.5
    save_dataset(dataset, tmp_path / "res.json", "coco", results=True)
    images = str(mini_dataset / "data_dataset_coco" / "JPEGImages")
    assert main(["convert", "--from", "coco", str(tmp_path / "res.json"), "--to", "labelme", str(tmp_path / "lm")]) == 2
    assert main(["convert", "--from", "coco", str(tmp_path / "res.json"), "--images", images,
                 "--to", "labelme", str(tmp_path / "lm")]) == 0
    shapes = [s for p in (tmp_path / "lm").glob("*.json") for s in json.loads(p.read_text())["shapes"]]
    assert shapes and all(s["score"] == 0.5 for s in shapes)


def test_convert_reports_what_it_wrote_left_out_and_lost(mini_dataset, tmp_path, capsys):
    src = str(mini_dataset / "data_annotated")  # 3 labelme files with their 3 images
    assert main(["convert", "--from", "labelme", src, "--to", "coco", str(tmp_path / "a.json")]) == 0
    out, err = capsys.readouterr()
    # make_mini_dataset.IMAGES: 4 + 7 + 3 instances; person, bottle, chair, sofa, bus, car and __ignore__
    assert out == f"3 images, 14 instances, 7 categories -> {tmp_path / 'a.json'} (1 file)\n"
    assert "3/3" in err and "6/6" not in err and "1/1" not in err

    maps = [arg for pair in ("bottle=-", "chair=-", "__ignore__=-", "sofa=car") for arg in ("--category-map", pair)]
    args = ["convert", "--from", "labelme", src, "--to", "cityscapes", str(tmp_path / "cs")] + maps
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"3 images, 10 instances, 3 categories -> {tmp_path / 'cs'} (12 files)"  # sofa -> car
    assert out[1] == "left out by the category map: 4 instances (__ignore__ 2, bottle 1, chair 1)"
    # make_mini_dataset.IMAGES, rect(x0, y0, x1, y1) covering (x1 - x0 + 1) * (y1 - y0 + 1) pixels, each instance
    # losing what the later ones (chair left out) cover of it. scene_2: person 0 rect(40, 60, 139, 299) under
    # person 1 rect(120, 80, 219, 279) on x 120..139, y 80..279; person 1 under person 2 rect(200, 100, 299, 259)
    # on x 200..219, y 100..259; person 2 under the sofa's rect(260, 240, 359, 329) on x 260..299, y 240..259.
    # scene_3: bus 0 rect(100, 40, 399, 339) under bus 1 rect(0, 150, 119, 299) on x 100..119, y 150..299 and
    # under the car rect(380, 260, 499, 374) on x 380..399, y 260..339.
    lost = [20 * 200, 20 * 160, 40 * 20, 20 * 150 + 20 * 80]
    assert out[2].startswith(f"overlaps: 4 instances lost {sum(lost)} pixels to overlapping instances (Cityscapes "
                             "holds one instance per pixel; the later instance keeps them; --overlap smaller")
    assert out[3:] == [f"  scene_2.jpg: instance 0 (person) lost {lost[0]} of {100 * 240} pixels",
                       f"  scene_2.jpg: instance 1 (person) lost {lost[1]} of {100 * 200} pixels",
                       f"  scene_2.jpg: instance 2 (person) lost {lost[2]} of {100 * 160} pixels",
                       f"  scene_3.jpg: instance 0 (bus) lost {lost[3]} of {300 * 300} pixels"]

    assert main(args + ["--category-map", "nonexistent=car"]) == 2
    assert "'nonexistent' matches no category name or id of the dataset (its categories: __ignore__ (1), " \
        in capsys.readouterr().err


def test_convert_checks_the_output_before_reading(mini_dataset, tmp_path, capsys):
    src = str(mini_dataset / "data_annotated")
    (tmp_path / "file").write_text("")
    (tmp_path / "dir" / "annotations.json").mkdir(parents=True)  # where "--to coco dir" would write
    for target_format, target, message in [
            ("cityscapes", tmp_path / "file", f"{tmp_path / 'file'}: is a file; expected a folder to write into"),
            ("coco", tmp_path / "file" / "a.json", f"{tmp_path / 'file' / 'a.json'}: cannot create folder "
                                                    f"{tmp_path / 'file'}, because {tmp_path / 'file'} is a file"),
            ("coco", tmp_path / "dir", f"{tmp_path / 'dir' / 'annotations.json'}: is a folder; expected the path "
                                       "of a file to write")]:
        assert main(["convert", "--from", "labelme", src, "--to", target_format, str(target)]) == 2
        err = capsys.readouterr().err
        assert "reading" not in err and err == f"bpr-studio convert: error: {message}\n"


@pytest.mark.parametrize("format", [None, "coco"])  # None: guessed, as the window opens a folder of images
def test_predictions_of_a_deleted_photo_go_nowhere_else(mini_dataset, tmp_path, format):
    # issue 11.1: the window drew the bus masks of a deleted photo on the sofa photo
    images = tmp_path / "JPEGImages"
    shutil.copytree(mini_dataset / "data_dataset_coco" / "JPEGImages", images)
    gt = load_dataset(mini_dataset / "data_dataset_coco" / "annotations.json")
    folder = load_dataset(images, format="coco")
    truth = {r.path.name: r.instances for r in gt.images}
    for record in folder.images:
        record.instances = truth[record.path.name]
        for inst in record.instances:
            inst.score = 0.9
    folder.categories = gt.categories
    save_dataset(folder, tmp_path / "coarse.json", "coco", results=True)
    (images / "scene_1.jpg").unlink()
    errors = []
    loaded = load_dataset(images, format=format, predictions=tmp_path / "coarse.json", errors=errors)
    assert len(errors) == len(truth["scene_1.jpg"]) == 3  # 2 persons and a bottle (its __ignore__ not in COCO)
    assert all("file_name 'scene_1.jpg': no such image" in message for _, message in errors)
    expected = {name: [(i.category_id, i.area) for i in instances] for name, instances in truth.items()
                if name != "scene_1.jpg"}
    assert {r.path.name: [(i.category_id, i.area) for i in r.instances] for r in loaded.images} == expected
