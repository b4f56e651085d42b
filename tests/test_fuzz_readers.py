"""Fuzz: the Cityscapes readers, the image reader and the weights loader raise their one error type or nothing.

(COCO and labelme have their own fuzz tests beside their other tests.) A crash here is any other
exception: the CLI would print a traceback and the window an internal error instead of a line
naming the file.
"""

import json
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpr_studio.core.model import WeightsError, load_weights
from bpr_studio.core.refiner import default_weights_path
from bpr_studio.io.cityscapes import read_cityscapes, read_cityscapes_results
from bpr_studio.io.dataset import Dataset, ImageRecord
from bpr_studio.io.errors import DatasetError
from bpr_studio.io.images import image_size, read_image

H, W = 12, 16
FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


GOOD_PNG = _png(np.zeros((H, W, 3), np.uint8))


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` cut short, with bytes flipped, or with bytes inserted: the damage a copy or a disk does."""
    cut = st.integers(0, len(data)).map(lambda n: data[:n])
    flips = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=6).map(
        lambda changes: bytes(_apply(bytearray(data), changes)))
    insert = st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=16)).map(
        lambda t: data[:t[0]] + t[1] + data[t[0]:])
    return cut | flips | insert | st.binary(max_size=64)


def _apply(buffer: bytearray, changes) -> bytearray:
    for at, value in changes:
        buffer[at] = value
    return buffer


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 40) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
point = st.lists(st.integers(-3, 20) | st.floats(-1e9, 1e9) | st.sampled_from([float("nan"), "1"]), max_size=3)
cs_object = st.fixed_dictionaries({
    "label": st.sampled_from(["car", "person", "cargroup", "road", "sky", "nothing", "", 3, None]),
    "polygon": st.lists(point, max_size=6) | json_values}, optional={"deleted": st.sampled_from([0, 1, None])})
polygons_file = st.fixed_dictionaries({"imgHeight": st.sampled_from([H, W, 0, "12"]),
                                       "imgWidth": st.sampled_from([W, H, -1]),
                                       "objects": st.lists(cs_object, max_size=4) | json_values}) | json_values


def _cityscapes_root(tmp_path_factory, name: str):
    root = tmp_path_factory.mktemp(name)
    images = root / "leftImg8bit" / "val" / "c"
    images.mkdir(parents=True)
    (images / "c_000000_000001_leftImg8bit.png").write_bytes(GOOD_PNG)
    gt = root / "gtFine" / "val" / "c"
    gt.mkdir(parents=True)
    return root, gt


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory):
    return _cityscapes_root(tmp_path_factory, "cs")


@FUZZ
@given(data=polygons_file, cut=st.none() | st.integers(0, 120))
def test_fuzz_cityscapes_polygons(cs_root, data, cut):
    root, gt = cs_root
    (gt / "c_000000_000001_gtFine_instanceIds.png").unlink(missing_ok=True)
    text = json.dumps(data)
    (gt / "c_000000_000001_gtFine_polygons.json").write_text(text if cut is None else text[:cut])
    try:
        dataset = read_cityscapes(root)
    except DatasetError:
        return
    assert all(inst.mask.shape == (H, W) for r in dataset.images for inst in r.instances)


ids_image = (st.sampled_from([(H, W), (W, H), (H, W, 3)]).flatmap(
    lambda shape: st.sampled_from([np.uint8, np.uint16]).flatmap(
        lambda dtype: st.lists(st.sampled_from([0, 7, 24, 26, 26000, 26001, 33999, 24500, 65535]),
                               min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda values: _png(np.array(values, np.int64).astype(dtype).reshape(shape))))))


@FUZZ
@given(data=ids_image.flatmap(lambda png: st.just(png) | mutated(png)))
def test_fuzz_cityscapes_instance_ids(cs_root, data):
    root, gt = cs_root
    (gt / "c_000000_000001_gtFine_polygons.json").unlink(missing_ok=True)
    (gt / "c_000000_000001_gtFine_instanceIds.png").write_bytes(data)
    try:
        dataset = read_cityscapes(root)
    except DatasetError:
        return
    assert all(inst.mask.shape == (H, W) for r in dataset.images for inst in r.instances)


line = st.lists(st.sampled_from(["masks/m.png", "masks/bad.png", "masks/none.png", "26", "24", "7", "x", "0.5",
                                 "nan", "1e400", "26.0", "-1", "\t", "\u00e9"]), max_size=4).map(" ".join)


@FUZZ
@given(lines=st.lists(line, max_size=4), raw=st.none() | st.binary(max_size=40),
       mask=mutated(_png(np.ones((H, W), np.uint8))))
def test_fuzz_cityscapes_results(tmp_path_factory, lines, raw, mask):
    folder = tmp_path_factory.mktemp("res")
    (folder / "masks").mkdir()
    (folder / "masks" / "m.png").write_bytes(_png(np.full((H, W), 255, np.uint8)))
    (folder / "masks" / "bad.png").write_bytes(mask)
    txt = folder / "c_000000_000001_pred.txt"
    txt.write_bytes(raw if raw is not None else "\n".join(lines).encode())
    images = Dataset([ImageRecord(path=folder / "c_000000_000001_leftImg8bit.png", width=W, height=H, image_id=0)])
    for errors in (None, []):
        try:
            dataset = read_cityscapes_results(folder, images, errors=errors)
        except DatasetError:
            continue
        assert all(inst.mask.shape == (H, W) for r in dataset.images for inst in r.instances)


_JPEG = cv2.imencode(".jpg", np.full((H, W, 3), 128, np.uint8))[1].tobytes()


@FUZZ
@given(data=mutated(GOOD_PNG) | mutated(_JPEG), suffix=st.sampled_from([".png", ".jpg"]))
def test_fuzz_image_reader(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("img") / f"x{suffix}"
    path.write_bytes(data)
    for read in (lambda: image_size(path), lambda: read_image(path), lambda: read_image(path, (W, H))):
        try:
            out = read()
        except DatasetError:
            continue
        assert isinstance(out, tuple) or (out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3)


@pytest.fixture(scope="module")
def weights_bytes():
    return default_weights_path().read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["cut", "flip", "compressed"]), region=st.sampled_from(["head", "tail", "any"]),
       where=st.floats(0, 1), value=st.integers(1, 255))
def test_fuzz_weights_loader(weights_bytes, tmp_path_factory, kind, region, where, value):
    """The shipped weights file damaged in its pickle (head), its zip directory (tail) or anywhere."""
    n = len(weights_bytes)
    at = {"head": int(where * 4096), "tail": n - 1 - int(where * 4096), "any": int(where * (n - 1))}[region]
    if kind == "cut":
        data = weights_bytes[:at]
    elif kind == "flip":
        data = weights_bytes[:at] + bytes([weights_bytes[at] ^ value]) + weights_bytes[at + 1:]
    else:
        data = zlib.compress(weights_bytes[:at + 1], 1)
    path = tmp_path_factory.mktemp("w") / "bad.pt"
    path.write_bytes(data)
    try:
        load_weights(path)
    except WeightsError as exc:
        assert "weights_only" not in str(exc)
