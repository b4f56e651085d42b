"""core.rle, the one door to pycocotools' mask API, checked against pycocotools itself."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from bpr_studio.core.boundary import mask_bbox
from bpr_studio.core.rle import (area, bbox, compressed, compressed_text, decode_rle, encode_rle, iou, polygons_to_rle,
                                 rle_counts, rle_crop, xor_area)


def _runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a flat bool array, background first (COCO's uncompressed RLE)."""
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [len(flat)]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def _masks(n=60, seed=3):
    """Random (H, W) bool masks of random sizes, every fifth empty."""
    rng = np.random.default_rng(seed)
    for trial in range(n):
        h, w = rng.integers(1, 50, 2)
        mask = rng.random((h, w)) > rng.random()
        if trial % 5 == 0:
            mask[:] = False
        yield mask


def _forms(mask: np.ndarray) -> list[dict]:
    """The three forms of the mask's RLE: str counts, bytes counts, uncompressed list."""
    h, w = mask.shape
    text = encode_rle(mask)
    return [text, {"size": text["size"], "counts": text["counts"].encode("ascii")},
            {"size": [int(h), int(w)], "counts": [int(c) for c in _runs(mask.ravel(order="F"))]}]


def test_every_form_decodes_and_measures_like_pycocotools():
    for mask in _masks():
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert isinstance(encode_rle(mask)["counts"], str)
        for rle in _forms(mask):
            assert np.array_equal(decode_rle(rle), mask)
            assert compressed(rle)["counts"] == reference["counts"]
            assert compressed_text(rle) == encode_rle(mask)
            assert area(rle) == np.count_nonzero(mask)
            assert bbox(rle) == [float(v) for v in mask_utils.toBbox(reference)]
            assert rle_counts(rle).tolist() == _runs(mask.ravel(order="F"))


def test_hand_decoded_counts_rebuild_pycocotools_masks():
    """rle_counts reads pycocotools' own strings: the runs paint exactly what pycocotools decodes."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        h, w = rng.integers(1, 300, 2)
        mask = rng.random((h, w)) > 0.97  # many runs, long ones too
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        counts = rle_counts(reference)
        painted = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool).reshape(w, h).T
        assert np.array_equal(painted, mask_utils.decode(reference).astype(bool))


@pytest.mark.parametrize("counts", ["0\x7f", "]", "\u00e90", "0" + chr(48 + 0x20)])
def test_malformed_counts_strings_raise_value_error(counts):
    with pytest.raises(ValueError):
        rle_counts({"size": [1, 1], "counts": counts})


def test_rle_crop_matches_full_decode():
    for mask in _masks():
        box = mask_bbox(mask)
        for rle in _forms(mask):
            crop = rle_crop(rle)
            if box is None:
                assert crop is None
                continue
            x0, y0, x1, y1 = box
            assert crop[:2] == (x0, y0) and np.array_equal(crop[2], mask[y0:y1, x0:x1])


def test_iou_xor_area_and_polygons():
    rng = np.random.default_rng(9)
    masks = [rng.random((20, 30)) > rng.random() for _ in range(6)] + [np.zeros((20, 30), bool)]
    rles = [encode_rle(m) for m in masks]
    expected = [[np.count_nonzero(a & b) / max(np.count_nonzero(a | b), 1) for b in masks] for a in masks]
    np.testing.assert_allclose(iou(rles, rles[:3] + [_forms(masks[3])[2]]), [row[:4] for row in expected], atol=1e-12)
    assert iou([], rles).shape == (0, 7) and iou(rles, []).shape == (7, 0)
    for a, b in zip(masks, masks[1:]):
        assert xor_area(encode_rle(a), _forms(b)[1]) == np.count_nonzero(a ^ b)
    square = polygons_to_rle([[1, 2, 5, 2, 5, 6, 1, 6], [10, 10, 12, 10, 12, 12, 10, 12]], 20, 30)
    assert isinstance(square["counts"], str) and square["size"] == [20, 30]
    expected_mask = np.zeros((20, 30), bool)
    expected_mask[2:6, 1:5] = True
    expected_mask[10:12, 10:12] = True
    assert np.array_equal(decode_rle(square), expected_mask)


def test_encoding_from_the_box_columns_matches_pycocotools_at_the_edges():
    rng = np.random.default_rng(11)
    for trial in range(400):
        h, w = rng.integers(1, 30, 2)
        mask = rng.random((h, w)) > rng.random()
        mask[:, : rng.integers(0, w + 1)] = False  # boxes that start, end or fill at the image edges
        if trial % 4 == 0:
            mask[:] = True
        if trial % 4 == 1:
            mask[-1, -1] = True
        if trial % 4 == 2:
            mask = np.asfortranarray(mask)
        reference = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert encode_rle(mask) == {"size": [int(h), int(w)], "counts": reference["counts"].decode("ascii")}
