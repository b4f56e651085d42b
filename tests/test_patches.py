"""Boundary map, patch sampling, NMS, crops and reassembly (bpr_studio.core.patches)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from bpr_studio.core.boundary import boundary_score_map, mask_bbox
from bpr_studio.core.patches import (
    _nms_equal_squares, boundary_patches, crop_boxes, foreground_probability, near_boundary, network_inputs,
    patch_probabilities, reassemble, undo_detached_changes)


def brute_force_boundary(mask):
    h, w = mask.shape
    padded = np.pad(mask.astype(int), 1)
    s = sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    return np.minimum(np.abs(s - 9), s) / 4.5


masks = st.integers(1, 70).flatmap(lambda h: st.integers(1, 70).flatmap(
    lambda w: arrays(bool, (h, w), elements=st.booleans())))


def blob_masks():
    """Random masks made of a few rectangles: touching borders, tiny, or larger than a patch."""
    @st.composite
    def build(draw):
        h, w = draw(st.integers(1, 90)), draw(st.integers(1, 90))
        mask = np.zeros((h, w), bool)
        for _ in range(draw(st.integers(0, 4))):
            y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
            mask[y0:y1, x0:x1] = draw(st.booleans()) or not mask.any()
        return mask
    return build()


@given(masks)
@settings(max_examples=60, deadline=None)
def test_boundary_score_matches_definition(mask):
    np.testing.assert_allclose(boundary_score_map(mask), brute_force_boundary(mask), atol=1e-6)


def test_boundary_of_full_mask_is_the_image_border():
    score = boundary_score_map(np.ones((5, 6), bool))
    assert (score[1:-1, 1:-1] == 0).all()
    assert (score[0] > 0).all() and (score[-1] > 0).all() and (score[:, 0] > 0).all() and (score[:, -1] > 0).all()


def test_mask_bbox():
    mask = np.zeros((10, 12), bool)
    assert mask_bbox(mask) is None
    mask[2:5, 3:9] = True
    assert mask_bbox(mask) == (3, 2, 9, 5)


@given(st.one_of(masks, blob_masks()), st.sampled_from([4, 8, 16, 64]), st.sampled_from([0.1, 0.25, 0.55, 0.9]))
@settings(max_examples=150, deadline=None)
def test_every_boundary_pixel_is_inside_a_patch(mask, patch_size, nms_thr):
    boxes = boundary_patches(mask, patch_size, nms_thr)
    h, w = mask.shape
    covered = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        assert x1 - x0 == patch_size and y1 - y0 == patch_size
        if w >= patch_size:
            assert 0 <= x0 and x1 <= w
        else:
            assert x0 == 0
        if h >= patch_size:
            assert 0 <= y0 and y1 <= h
        else:
            assert y0 == 0
        covered[y0:y1, x0:x1] = True
    boundary = brute_force_boundary(mask) > 0
    assert not (boundary & ~covered).any()
    if not boundary.any():
        assert len(boxes) == 0


def test_last_row_and_column_are_reachable():
    mask = np.zeros((200, 300), bool)
    mask[150:, 250:] = True  # touches the bottom-right corner
    boxes = boundary_patches(mask, 64, 0.25)
    assert (boxes[:, 2] == 300).any() and (boxes[:, 3] == 200).any()
    assert (boxes[:, 2] <= 300).all() and (boxes[:, 3] <= 200).all()


def test_more_patches_at_higher_nms_threshold():
    yy, xx = np.mgrid[:256, :256]
    mask = (yy - 128) ** 2 + (xx - 128) ** 2 < 90 ** 2
    counts = [len(boundary_patches(mask, 64, thr)) for thr in (0.1, 0.25, 0.55, 0.8)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def generic_greedy_nms(boxes, thr):
    keep, alive = [], np.ones(len(boxes), bool)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        keep.append(i)
        ix = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]), 0, None)
        inter = ix * iy
        iou = inter / (area[i] + area - inter)
        alive &= ~(iou > thr)
    return keep


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), min_size=1, max_size=60),
       st.sampled_from([0.1, 0.25, 0.5, 0.7]))
@settings(max_examples=100, deadline=None)
def test_equal_square_nms_matches_generic_greedy_nms(corners, thr):
    bx = np.array([c[0] for c in corners])
    by = np.array([c[1] for c in corners])
    boxes = np.stack([bx, by, bx + 16, by + 16], 1).astype(float)
    assert list(_nms_equal_squares(bx, by, 16, thr)) == generic_greedy_nms(boxes, thr)


def test_crop_boxes_inside_and_replicated_border():
    image = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    boxes = np.array([[2, 3, 6, 7], [8, 6, 12, 10]], np.int32)
    crops = crop_boxes(image, boxes)
    np.testing.assert_array_equal(crops[0], image[3:7, 2:6])
    np.testing.assert_array_equal(crops[1], image[6:10, 8:12])
    padded = crop_boxes(image, boxes, padding=2)
    assert padded.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(padded[1][2:6, 2:6], image[6:10, 8:12])
    np.testing.assert_array_equal(padded[1][-1, 2:6], image[9, 8:12])  # below the image: last row repeated
    np.testing.assert_array_equal(padded[1][2:6, -1], image[6:10, 11])  # right of the image: last column


def test_network_inputs_normalise_and_map_mask():
    image = np.empty((2, 4, 4, 3), np.uint8)
    image[...] = (124, 116, 104)
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2] = True
    x = network_inputs(image, mask, 8)
    assert x.shape == (2, 4, 8, 8) and x.dtype == torch.float32
    assert x[:, :3].abs().max() < 0.02
    assert set(x[:, 3].unique().tolist()) == {-1.0, 1.0}
    assert (x[:, 3, :4] == 1).all() and (x[:, 3, 4:] == -1).all()


def test_network_inputs_resized_equal_normalising_after_resizing():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    mask = rng.random((3, 6, 6)) > 0.5
    x = network_inputs(image, mask, 12, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))
    raw = torch.cat([torch.from_numpy(image).permute(0, 3, 1, 2).float(), torch.from_numpy(mask).float()[:, None]], 1)
    expected = torch.cat([torch.nn.functional.interpolate(raw[:, :3], size=(12, 12), mode="bilinear"),
                          torch.nn.functional.interpolate(raw[:, 3:], size=(12, 12), mode="nearest")], 1)
    expected = (expected - torch.tensor([10.0, 20.0, 30.0, 0.5]).view(1, 4, 1, 1)) / torch.tensor(
        [2.0, 4.0, 8.0, 0.5]).view(1, 4, 1, 1)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-4)


def test_foreground_probability_is_softmax_of_class_1():
    logits = torch.randn(4, 2, 5, 5, generator=torch.Generator().manual_seed(0)) * 10
    fg = foreground_probability(logits)
    assert fg.shape == (4, 5, 5) and fg.dtype == np.float32
    np.testing.assert_allclose(fg, torch.softmax(logits, dim=1)[:, 1].numpy(), rtol=0, atol=1e-6)


def test_patch_probabilities_resize_and_cut_padding():
    prob = torch.zeros(1, 16, 16)
    prob[0, 4:12, 4:12] = 1.0  # network output for an 8 px crop (2 + 4 + 2) at input 16: the centre
    out = patch_probabilities(prob, patch_size=4, padding=2)  # resized to 8, padding cut: 4x4
    assert out.shape == (1, 4, 4) and out.dtype == np.float32
    assert out.min() > 0.5


def test_reassemble_averages_overlaps_and_keeps_untouched_pixels():
    coarse = np.zeros((6, 10), bool)
    coarse[0, 0] = True       # outside every box: kept as foreground
    coarse[5, 9] = False      # outside every box: kept as background
    coarse[2, 3] = True       # inside a box: overwritten by the patches
    boxes = np.array([[1, 1, 5, 5], [3, 1, 7, 5]], np.int32)
    probs = np.stack([np.full((4, 4), 0.4, np.float32), np.full((4, 4), 0.7, np.float32)])
    out = reassemble(coarse, boxes, probs)
    assert out[0, 0] and not out[5, 9]
    assert not out[2, 1:3].any()          # only the first box (0.4)
    assert out[2, 3:5].all()              # overlap: (0.4 + 0.7) / 2 = 0.55
    assert out[2, 5:7].all()              # only the second box (0.7)
    probs[1] = 0.55                       # overlap now (0.4 + 0.55) / 2 = 0.475
    out = reassemble(coarse, boxes, probs)
    assert not out[2, 3:5].any() and out[2, 5:7].all()
    assert not coarse[2, 4]               # the input is not modified


def test_undo_detached_changes_keeps_boundary_moves_and_drops_islands_and_holes():
    coarse = np.zeros((40, 40), bool)
    coarse[10:30, 10:30] = True               # a 20x20 square
    refined = coarse.copy()
    refined[10:30, 30:33] = True              # the right edge moved out by 3 px: touches the boundary
    refined[10:12, 10:30] = False             # the top edge moved in by 2 px: touches the boundary
    refined[18:21, 18:21] = False             # a hole 8 px inside: detached
    refined[2:5, 35:38] = True                # an island 5 px outside: detached
    out = refined.copy()
    undo_detached_changes(coarse, out)
    expected = coarse.copy()
    expected[10:30, 30:33] = True
    expected[10:12, 10:30] = False
    np.testing.assert_array_equal(out, expected)


def test_reassemble_attached_only_undoes_a_speck_inside_a_patch():
    coarse = np.zeros((32, 32), bool)
    coarse[:, :16] = True                     # a vertical edge through the patch's centre
    probs = coarse.astype(np.float32)[None].copy()
    probs[0, :, 16:18] = 0.9                  # the edge moved right by 2 px
    probs[0, 4:7, 4:7] = 0.1                  # a hole 9 px left of the edge
    boxes = np.array([[0, 0, 32, 32]], np.int32)
    plain = reassemble(coarse, boxes, probs)
    attached = reassemble(coarse, boxes, probs, attached_only=True)
    assert not plain[4:7, 4:7].any() and attached[4:7, 4:7].all()
    assert attached[:, 16:18].all() and not attached[:, 18:].any()
    assert reassemble(coarse, boxes, probs, out=coarse, attached_only=True)[4:7, 4:7].all()  # in place


def test_reassemble_margin_keeps_the_coarse_value_where_the_network_is_unsure():
    coarse = np.zeros((32, 32), bool)
    coarse[:, :16] = True                     # a vertical edge through the patch's centre
    probs = coarse.astype(np.float32)[None].copy()
    probs[0, :, 16:18] = 0.58                 # unsure the edge moved right by 2 px
    probs[0, :, 18:20] = 0.9                  # sure of 2 px more (an island: attached_only is off)
    probs[0, :, 14:16] = 0.42                 # unsure the edge moved left
    probs[0, :, 12:14] = 0.35                 # sure enough of the 2 px before
    boxes = np.array([[0, 0, 32, 32]], np.int32)
    plain = reassemble(coarse, boxes, probs)
    assert plain[:, :12].all() and not plain[:, 12:16].any() and plain[:, 16:20].all() and not plain[:, 20:].any()
    kept = reassemble(coarse, boxes, probs, margin=0.1)
    assert kept[:, :12].all() and not kept[:, 12:14].any() and kept[:, 14:16].all()
    assert not kept[:, 16:18].any() and kept[:, 18:20].all() and not kept[:, 20:].any()
    # overlapping patches: the margin applies to their average
    two = reassemble(coarse, np.array([[0, 0, 32, 32]] * 2, np.int32),
                     np.concatenate([probs, np.full_like(probs, 0.5)]), margin=0.1)
    assert two[:, 12:16].all() and not two[:, 16:18].any() and two[:, 18:20].all()  # 0.35 -> 0.425, 0.9 -> 0.7


def test_reassemble_max_shift_keeps_changes_within_that_distance_of_the_coarse_boundary():
    coarse = np.zeros((32, 48), bool)
    coarse[:, :20] = True                     # a vertical edge between columns 19 and 20
    probs = coarse.astype(np.float32)[None].copy()
    probs[0, :16, 20:30] = 0.9                # top half: the network moves the edge 10 px right
    probs[0, 16:, 16:20] = 0.1                # bottom half: 4 px left
    boxes = np.array([[0, 0, 48, 32]], np.int32)
    free = reassemble(coarse, boxes, probs)
    assert free[:16, :30].all() and not free[16:, 16:].any()
    near = reassemble(coarse, boxes, probs, max_shift=3)
    assert near[:16, :23].all() and not near[:16, 23:].any()  # columns 20-22: 1-3 px from the coarse mask
    assert near[16:, :17].all() and not near[16:, 17:].any()  # columns 17-19 turned background, 16 kept
    kept = reassemble(coarse, boxes, probs, attached_only=True, max_shift=3, out=coarse.copy())
    np.testing.assert_array_equal(kept, near)


def test_near_boundary_measures_from_the_other_value_and_not_from_the_array_edge():
    mask = np.zeros((7, 9), bool)
    mask[2:5, 2:5] = True                     # a 3x3 square
    expected = np.zeros((7, 9), bool)
    expected[1:6, 1:6] = True                 # the square and the pixels next to it, but not diagonally
    expected[[1, 1, 5, 5, 3], [1, 5, 1, 5, 3]] = False  # nor its centre, 2 px from the outside
    np.testing.assert_array_equal(near_boundary(mask, 1), expected)
    assert near_boundary(mask, 1.5)[1, 1] and near_boundary(mask, 2)[3, 3]
    assert not near_boundary(np.ones((4, 4), bool), 3).any() and not near_boundary(np.zeros((4, 4), bool), 3).any()


def test_reassemble_box_larger_than_image():
    coarse = np.zeros((3, 5), bool)
    boxes = np.array([[0, 0, 8, 8]], np.int32)
    out = reassemble(coarse, boxes, np.ones((1, 8, 8), np.float32))
    assert out.all()


@pytest.mark.parametrize("shape", [(40, 30), (3, 100), (100, 2)])
def test_small_images_and_masks_smaller_than_a_patch(shape):
    mask = np.zeros(shape, bool)
    mask[shape[0] // 3: shape[0] // 3 + 2, shape[1] // 3: shape[1] // 3 + 2] = True
    boxes = boundary_patches(mask, 64, 0.25)
    assert len(boxes) >= 1
    crops = crop_boxes(mask, boxes)
    assert crops.shape[1:] == (64, 64)
    out = reassemble(mask, boxes, crops.astype(np.float32))
    np.testing.assert_array_equal(out, mask)


def test_patches_of_a_mask_window_are_the_whole_masks():
    """boundary_patches / patch_boxes on a window (the mask's box + 2 px, clipped) of an image give the
    boxes of the whole mask, also where the mask touches the image border."""
    import cv2

    from bpr_studio.core.config import RefinerConfig
    from bpr_studio.core.refiner import patch_boxes

    config = RefinerConfig(patch_size=32, min_size=0)
    for centre, axes in (((60, 50), (30, 20)), ((5, 70), (40, 25)), ((150, 95), (30, 30))):
        mask = np.zeros((100, 160), np.uint8)
        cv2.ellipse(mask, centre, axes, 15, 0, 360, 1, -1)
        mask = mask.astype(bool)
        rows, cols = np.nonzero(mask)
        x0, y0 = max(cols.min() - 2, 0), max(rows.min() - 2, 0)
        x1, y1 = min(cols.max() + 3, 160), min(rows.max() + 3, 100)
        window = mask[y0:y1, x0:x1].copy()
        whole = patch_boxes(mask, config)
        assert len(whole) > 0
        assert np.array_equal(patch_boxes(window, config, origin=(x0, y0), shape=mask.shape), whole)
