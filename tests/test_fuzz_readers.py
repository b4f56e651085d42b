"""Fuzz: every reader of dataset files, the image reader and the weights loader raise their one error type or nothing.

A crash here is any other exception: the CLI would print a traceback and the window an internal
error instead of a line naming the file. The annotation readers of the registered formats
(bpr_studio.io.formats.FORMATS) share one test, parametrised over the formats: a new format has to
bring its case.
"""

import base64
import copy
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpr_studio.core.model import WeightsError, load_weights
from bpr_studio.core.refiner import default_weights_path
from bpr_studio.io.cityscapes import read_cityscapes, read_cityscapes_results, write_cityscapes
from bpr_studio.io.coco import read_coco, read_coco_results, write_coco, write_coco_results
from bpr_studio.io.dataset import Dataset, ImageRecord
from bpr_studio.io.errors import DatasetError
from bpr_studio.io.formats import FORMATS
from bpr_studio.io.images import image_size, read_image
from bpr_studio.io.labelme import read_labelme, write_labelme

H, W = 12, 16  # Cityscapes files and images
JH, JW = 48, 64  # COCO and labelme files
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
    st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=True) | st.just(10 ** 400)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
numbers = st.integers(-5, 70) | st.floats(-1e12, 1e12) | st.sampled_from([float("nan"), float("inf"), float("-inf"),
                                                                          10 ** 400])

# ---- COCO annotations file: images a.png (readable) and b.png (not an image) -------------------
polygon = st.lists(numbers, max_size=10)
rle = st.fixed_dictionaries({"size": st.sampled_from([[JH, JW], [JW, JH], [JH], "x"]),
                             "counts": st.text(max_size=12) | st.lists(st.integers(-2, 3100), max_size=5)})
annotation = st.fixed_dictionaries(
    {"id": st.integers(0, 3), "image_id": st.sampled_from([1, 2, "1", None]),
     "category_id": st.sampled_from([1, 2, True, "1"]),
     "segmentation": st.lists(polygon, max_size=3) | rle | json_values,
     "iscrowd": st.sampled_from([0, 1, 2, None]), "score": st.none() | numbers | st.text(max_size=2)})
coco_image = st.fixed_dictionaries({"id": st.sampled_from([1, 2, "1", None, 1.5]),
                                    "file_name": st.sampled_from(["a.png", "b.png", "", 3]),
                                    "width": st.sampled_from([JW, JW + 1, 0, str(JW)]),
                                    "height": st.sampled_from([JH, -1])})
coco_file = st.fixed_dictionaries({"images": st.lists(coco_image, max_size=3) | json_values,
                                   "annotations": st.lists(annotation, max_size=4) | json_values,
                                   "categories": st.sampled_from([[{"id": 1, "name": "x"}], [{"id": 1}], {}, [1]])})

# ---- labelme file beside its image x.png -------------------------------------------------------
_mask_png = base64.b64encode(cv2.imencode(".png", np.ones((3, 4), np.uint8))[1].tobytes()).decode()
labelme_shape = st.fixed_dictionaries({
    "label": st.sampled_from(["a", "b", "__ignore__", "", 3]),
    "points": st.lists(st.lists(numbers, min_size=0, max_size=3), max_size=6) | json_values,
    "group_id": st.sampled_from([None, 0, 1, "x", 2.5]),
    "shape_type": st.sampled_from(["polygon", "rectangle", "circle", "mask", "point", "line", None, "zzz"]),
    "mask": st.sampled_from([None, _mask_png, "", "AAAA", _mask_png[:20]]),
    "score": st.none() | numbers | st.text(max_size=2)})
labelme_file = st.fixed_dictionaries({"shapes": st.lists(labelme_shape, max_size=4) | json_values,
                                      "imagePath": st.sampled_from(["x.png", "none.png", 5, None]),
                                      "imageHeight": st.sampled_from([JH, JH + 1, None, str(JH)]),
                                      "imageWidth": st.sampled_from([JW, None, -1])})

# ---- Cityscapes gtFine polygons file of leftImg8bit/val/c/c_000000_000001_leftImg8bit.png --------
point = st.lists(st.integers(-3, 20) | st.floats(-1e9, 1e9) | st.sampled_from([float("nan"), "1"]), max_size=3)
cs_object = st.fixed_dictionaries({
    "label": st.sampled_from(["car", "person", "cargroup", "road", "sky", "nothing", "", 3, None]),
    "polygon": st.lists(point, max_size=6) | json_values}, optional={"deleted": st.sampled_from([0, 1, None])})
polygons_file = st.fixed_dictionaries({"imgHeight": st.sampled_from([H, W, 0, str(H)]),
                                       "imgWidth": st.sampled_from([W, H, -1]),
                                       "objects": st.lists(cs_object, max_size=4) | json_values})


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


@dataclass(frozen=True)
class ReaderCase:
    """How to fuzz one format's annotation reader."""

    document: st.SearchStrategy  # the JSON written (any JSON value is tried too)
    size: tuple[int, int]  # (height, width) of the images in the format's folder
    max_cut: int  # the text is also tried cut short, to at most this many characters
    file: str  # where it is written in the format's folder
    read: Callable[[Path], Dataset]  # reads the format's folder
    write: Callable[[Dataset, Path], object]  # writes what was read into a new path
    writer_may_refuse: bool  # the writer may raise DatasetError for what the reader gave (an empty mask)


READERS = {
    "coco": ReaderCase(coco_file, (JH, JW), max_cut=200, file="fuzz.json",
                       read=lambda folder: read_coco(folder / "fuzz.json"),
                       write=lambda dataset, out: write_coco(dataset, out / "written.json"), writer_may_refuse=False),
    "cityscapes": ReaderCase(polygons_file, (H, W), max_cut=120,
                             file="gtFine/val/c/c_000000_000001_gtFine_polygons.json", read=read_cityscapes,
                             write=write_cityscapes, writer_may_refuse=True),
    "labelme": ReaderCase(labelme_file, (JH, JW), max_cut=120, file="x.json",
                          read=lambda folder: read_labelme(folder / "x.json"), write=write_labelme,
                          writer_may_refuse=True),
}


@pytest.fixture(scope="module")
def reader_folders(tmp_path_factory) -> dict[str, Path]:
    """A folder per format with the images its files name."""
    coco = tmp_path_factory.mktemp("fuzz_coco")
    cv2.imwrite(str(coco / "a.png"), np.zeros((JH, JW, 3), np.uint8))
    (coco / "b.png").write_bytes(b"not an image")
    labelme = tmp_path_factory.mktemp("fuzz_labelme")
    cv2.imwrite(str(labelme / "x.png"), np.zeros((JH, JW, 3), np.uint8))
    return {"coco": coco, "cityscapes": _cityscapes_root(tmp_path_factory, "fuzz_cs")[0], "labelme": labelme}


@pytest.mark.parametrize("format", FORMATS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_annotation_reader(reader_folders, format, data):
    """The reader raises DatasetError or gives images of their true size with masks of that size, and
    what it read can be written back (or the writer says why not, where the format may refuse it)."""
    case, folder = READERS[format], reader_folders[format]
    text = json.dumps(data.draw(case.document | json_values, label="document"))
    cut = data.draw(st.none() | st.integers(0, case.max_cut), label="cut")
    (folder / case.file).write_text(text if cut is None else text[:cut])
    try:
        dataset = case.read(folder)
    except DatasetError:
        return
    for record in dataset.images:
        assert (record.height, record.width) == case.size
        for inst in record.instances:
            assert inst.mask.shape == case.size
    try:
        case.write(dataset, folder / "written")
    except DatasetError:
        if not case.writer_may_refuse:
            raise


ids_image = (st.sampled_from([(H, W), (W, H), (H, W, 3)]).flatmap(
    lambda shape: st.sampled_from([np.uint8, np.uint16]).flatmap(
        lambda dtype: st.lists(st.sampled_from([0, 7, 24, 26, 26000, 26001, 33999, 24500, 65535]),
                               min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda values: _png(np.array(values, np.int64).astype(dtype).reshape(shape))))))


@FUZZ
@given(data=ids_image.flatmap(lambda png: st.just(png) | mutated(png)))
def test_fuzz_cityscapes_instance_ids(cs_root, data):
    root, gt = cs_root
    (gt / "c_000000_000001_gtFine_instanceIds.png").write_bytes(data)
    try:
        dataset = read_cityscapes(root)
    except DatasetError:
        return
    assert all(inst.mask.shape == (H, W) for r in dataset.images for inst in r.instances)


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(annotation | json_values, max_size=4) | json_values)
def test_fuzz_coco_results(reader_folders, entries):
    folder = reader_folders["coco"]
    images = Dataset(images=[ImageRecord(path=folder / "a.png", width=JW, height=JH, image_id=1)],
                     categories={1: "x"})
    path = folder / "fuzz_results.json"
    path.write_text(json.dumps(copy.deepcopy(entries)))
    try:
        dataset = read_coco_results(path, images)
    except DatasetError:
        return
    write_coco_results(dataset, folder / "written_results.json")


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
