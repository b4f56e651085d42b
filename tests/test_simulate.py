"""The coarse-mask simulator: deterministic for a seed, errors near the boundary, COCO results via the CLI."""

import json

import cv2
import numpy as np
import pytest

from bpr_studio.cli import main
from bpr_studio.core.metrics import mask_iou
from bpr_studio.core.simulate import coarse_mask, simulate_instances


def blob(shape=(200, 240)):
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, (120, 100), (80, 60), 20, 0, 360, 1, -1)
    cv2.rectangle(m, (30, 95), (200, 99), 1, -1)  # a thin part
    return m.astype(bool)


def distance_to_boundary(mask):
    """(H, W) distance of every pixel to the nearest pixel of the other value."""
    m = mask.astype(np.uint8)
    return np.where(mask, cv2.distanceTransform(m, cv2.DIST_L2, 3), cv2.distanceTransform(1 - m, cv2.DIST_L2, 3))


@pytest.mark.parametrize("style", ["maskrcnn", "quarter"])
def test_deterministic_for_a_seed(style):
    gt = blob()
    a = coarse_mask(gt, np.random.default_rng(3), style=style, noise=0.1)
    b = coarse_mask(gt, np.random.default_rng(3), style=style, noise=0.1)
    c = coarse_mask(gt, np.random.default_rng(4), style=style, noise=0.1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("style", ["maskrcnn", "quarter"])
def test_coarse_differs_mainly_near_the_boundary(style):
    gt = blob()
    coarse = coarse_mask(gt, np.random.default_rng(0), style=style)
    wrong = coarse != gt
    assert wrong.any()  # it is coarse: the thin part and the outline change
    assert mask_iou(coarse, gt) > 0.85
    near = distance_to_boundary(gt)[wrong] <= 6
    assert near.mean() > 0.95


def test_mask_stays_inside_its_box():
    gt = blob()
    ys, xs = np.nonzero(gt)
    coarse = coarse_mask(gt, np.random.default_rng(0), box_jitter=0.0)
    cy, cx = np.nonzero(coarse)
    assert cx.min() >= xs.min() and cx.max() <= xs.max() and cy.min() >= ys.min() and cy.max() <= ys.max()
    # a box jittered inwards cuts the object off, as a real detector's box does
    cut = [coarse_mask(gt, np.random.default_rng(s), box_jitter=0.3) for s in range(5)]
    assert min(mask_iou(c, gt) for c in cut) < mask_iou(coarse, gt) - 0.05


def test_empty_and_unknown_style():
    empty = np.zeros((20, 20), bool)
    assert not coarse_mask(empty, np.random.default_rng(0)).any()
    with pytest.raises(ValueError, match="style"):
        coarse_mask(blob(), np.random.default_rng(0), style="sam")


def test_simulate_instances_scores_and_order():
    masks = np.stack([blob(), np.zeros((200, 240), bool)])
    out = simulate_instances(masks, np.random.default_rng(0))
    assert [j for j, _, _ in out] == [0]  # the empty one is missed, as by a detector
    j, coarse, score = out[0]
    assert coarse.shape == (200, 240) and coarse.dtype == bool
    assert 0.05 <= score <= 0.99


def test_cli_writes_same_results_for_a_seed(mini_dataset, tmp_path):
    ann = mini_dataset / "data_dataset_coco" / "annotations.json"
    paths = [tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"]
    for path, seed in zip(paths, (0, 0, 1)):
        assert main(["simulate", "--annotations", str(ann), "--out", str(path), "--seed", str(seed)]) == 0
    a, b, c = (json.loads(p.read_text()) for p in paths)
    assert a == b and a != c
    # the 12 COCO instances of make_mini_dataset.IMAGES, the smallest 20 x 60 pixels: none is missed
    assert len(a) == 12 and all(0 < r["score"] < 1 for r in a)


def test_contour_style_moves_the_boundary_both_ways_without_bias():
    from bpr_studio.core.simulate import coarse_mask

    mask = np.zeros((200, 300), bool)
    mask[50:150, 60:250] = True
    diffs = []
    for seed in range(60):
        coarse = coarse_mask(mask, np.random.default_rng(seed), style="contour")
        assert np.array_equal(coarse, coarse_mask(mask, np.random.default_rng(seed), style="contour"))
        assert (coarse & ~mask).any() or (mask & ~coarse).any()
        diffs.append(int(coarse.sum()) - int(mask.sum()))
    perimeter = 2 * (100 + 190)
    assert min(diffs) < 0 < max(diffs)  # grows and shrinks
    assert abs(np.mean(diffs)) / perimeter < 0.5  # on average within half a pixel of the truth


def test_threshold_below_one_half_grows_the_masks_above_shrinks_them():
    mask = np.zeros((300, 300), bool)
    cv2.circle(mask.view(np.uint8), (150, 150), 100, 1, -1)
    sizes = {t: coarse_mask(mask, np.random.default_rng(0), threshold=t).sum() for t in (0.3, 0.5, 0.7)}
    assert sizes[0.3] > sizes[0.5] > sizes[0.7]
    quarter = {t: coarse_mask(mask, np.random.default_rng(0), style="quarter", threshold=t).sum() for t in (0.3, 0.7)}
    assert quarter[0.3] > quarter[0.7]
