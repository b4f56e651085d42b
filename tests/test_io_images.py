"""Reading images: EXIF-rotated photographs are rotated only when the dataset states the rotated size."""

import json

import numpy as np
import pytest
from PIL import Image

from bpr_studio.io.errors import DatasetError
from bpr_studio.io.images import check_image_size, image_size, read_image
from bpr_studio.io.labelme import read_labelme


@pytest.fixture
def rotated_jpeg(tmp_path):
    """A 60x20 (W x H) JPEG stored sideways with EXIF orientation 6 (shown rotated 90 degrees clockwise,
    i.e. 20x60); the left third is white so the rotation can be seen. Returns (path, stored pixels)."""
    pixels = np.zeros((20, 60, 3), np.uint8)
    pixels[:, :20] = 255
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif, quality=100)
    return path, pixels


def test_stored_pixels_without_a_stated_size(rotated_jpeg):
    path, pixels = rotated_jpeg
    assert image_size(path) == (60, 20)
    image = read_image(path)
    assert image.shape == (20, 60, 3)
    assert image[:, :20].mean() > 240 and image[:, 40:].mean() < 15


def test_exif_rotation_applied_when_the_dataset_states_the_rotated_size(rotated_jpeg):
    path, pixels = rotated_jpeg
    image = read_image(path, expected_size=(20, 60))
    assert image.shape == (60, 20, 3)
    # orientation 6: rotate 90 degrees clockwise, so the stored left columns become the top rows
    assert image[:20].mean() > 240 and image[40:].mean() < 15
    assert read_image(path, expected_size=(60, 20)).shape == (20, 60, 3)
    check_image_size(path, 20, 60)
    check_image_size(path, 60, 20)
    with pytest.raises(DatasetError, match=r"phone.jpg: image is 60x20 pixels, but the dataset file says 30x30"):
        check_image_size(path, 30, 30)
    with pytest.raises(DatasetError, match=r"phone.jpg: image is 60x20 pixels, but the dataset file says 30x30"):
        read_image(path, expected_size=(30, 30))


def test_labelme_file_of_a_rotated_photograph_loads(rotated_jpeg):
    path, _ = rotated_jpeg
    shape = {"label": "top", "points": [[0, 0], [19, 0], [19, 19], [0, 19]], "group_id": None,
             "shape_type": "polygon"}
    (path.parent / "phone.json").write_text(json.dumps({"version": "5.5.0", "shapes": [shape],
                                                        "imagePath": "phone.jpg", "imageHeight": 60, "imageWidth": 20}))
    dataset = read_labelme(path.parent)
    record = dataset.images[0]
    image = read_image(record.path, (record.width, record.height))
    mask = record.masks()[0]
    assert mask.shape == image.shape[:2] == (60, 20)
    assert image[mask].mean() > 240  # the annotated square is the white part
