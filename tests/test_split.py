"""bpr-studio split: a stable split of a COCO file by image."""

import json

from bpr_studio.cli import main
from bpr_studio.io.split import is_validation_image


def test_split_by_image_is_stable_disjoint_and_complete(tmp_path):
    doc = {"images": [{"id": i, "file_name": f"img{i}.jpg", "width": 4, "height": 4} for i in range(200)],
           "annotations": [{"id": 10 + i, "image_id": i % 200, "category_id": 1} for i in range(300)],
           "categories": [{"id": 1, "name": "a"}]}
    src = tmp_path / "a.json"
    src.write_text(json.dumps(doc))
    assert main(["split", "--annotations", str(src), "--train-out", str(tmp_path / "t.json"),
                 "--val-out", str(tmp_path / "v.json")]) == 0
    train, val = json.loads((tmp_path / "t.json").read_text()), json.loads((tmp_path / "v.json").read_text())
    t_ids, v_ids = {im["id"] for im in train["images"]}, {im["id"] for im in val["images"]}
    assert not t_ids & v_ids and t_ids | v_ids == set(range(200))
    assert 20 <= len(v_ids) <= 60  # about a fifth
    assert all(a["image_id"] in v_ids for a in val["annotations"])
    assert len(train["annotations"]) + len(val["annotations"]) == 300
    assert train["categories"] == val["categories"] == doc["categories"]
    # depends on the name only: the same images, shuffled, split the same way
    assert {i for i in range(200) if is_validation_image(f"img{i}.jpg", 0.2)} == v_ids


def test_split_names_the_file_when_it_is_not_coco(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1}]}))
    assert main(["split", "--annotations", str(bad), "--train-out", str(tmp_path / "t.json"),
                 "--val-out", str(tmp_path / "v.json")]) == 2
    assert not (tmp_path / "t.json").exists()
