"""Synthetic scenes: exact, disjoint instance masks; a COCO dataset with predictions from the CLI."""

import cv2
import numpy as np
import pytest

from bpr_studio.cli import main
from bpr_studio.core.synth import CATEGORIES, _cast_shadow, make_scene
from bpr_studio.io.coco import read_coco, read_coco_results
from bpr_studio.io.images import read_image


def test_scene_is_deterministic_with_disjoint_masks():
    image, masks, kinds = make_scene(np.random.default_rng([5, 0]), 160, 200)
    again, masks2, _ = make_scene(np.random.default_rng([5, 0]), 160, 200)
    assert image.shape == (160, 200, 3) and image.dtype == np.uint8
    assert np.array_equal(image, again) and all(np.array_equal(a, b) for a, b in zip(masks, masks2))
    assert masks and len(masks) == len(kinds) and set(kinds) <= set(CATEGORIES)
    stack = np.stack(masks)
    assert stack.dtype == bool and stack.shape[1:] == (160, 200)
    assert stack.sum(axis=0).max() == 1  # occlusion leaves each pixel to at most one instance
    assert all(m.sum() >= 64 for m in masks)


def test_scenes_vary():
    shapes = [make_scene(np.random.default_rng([1, i]))[0].shape for i in range(3)]
    counts = {len(make_scene(np.random.default_rng([2, i]), 120, 120)[1]) for i in range(6)}
    assert len(set(shapes)) > 1 and len(counts) > 1


def test_cli_writes_a_coco_dataset_with_predictions(tmp_path):
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--images", "2", "--seed", "3"]) == 0
    gt = read_coco(out / "annotations.json")
    pred = read_coco_results(out / "predictions.json", gt)
    assert len(gt.images) == 2 and gt.categories == CATEGORIES
    for g, p in zip(gt.images, pred.images):
        image = read_image(g.path)
        assert image.shape == (g.height, g.width, 3)
        scene, masks, _ = make_scene(np.random.default_rng([3, gt.images.index(g)]), parts=0.5)
        assert np.array_equal(image, scene)  # lossless: the file holds the pixels the masks were made for
        assert np.array_equal(g.masks(), np.stack(masks))
        assert 0 < len(p.instances) <= len(g.instances)
        assert all(i.score is not None for i in p.instances)


def _inner_edge_share(image, masks):
    """Share of pixels at least 3 px inside an object whose gradient is strong (Sobel magnitude > 150)."""
    inside = np.zeros(image.shape[:2], bool)
    for m in masks:
        inside |= cv2.erode(m.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    gray = image.astype(np.float32).mean(axis=2)
    grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    return float(np.mean(grad[inside] > 150)) if inside.any() else 0.0


def test_inner_parts_add_edges_inside_objects():
    # parts=0 draws no extra random numbers: the categories drawn before --parts existed come out again
    kinds = [make_scene(np.random.default_rng([7, i]), 200, 240, parts=0.0)[2] for i in range(3)]
    assert kinds == [[3], [3, 1, 4, 2], [1, 1, 3, 1, 2]]
    with_parts, without = [], []
    for i in range(6):
        image, masks, _ = make_scene(np.random.default_rng([8, i]), 200, 240, parts=1.0)
        assert masks and np.stack(masks).sum(axis=0).max() == 1
        with_parts.append(_inner_edge_share(image, masks))
        without.append(_inner_edge_share(*make_scene(np.random.default_rng([8, i]), 200, 240)[:2]))
    assert np.mean(with_parts) > 1.5 * np.mean(without)


def test_edge_coverage_leaves_mixed_edge_pixels_out_of_every_mask():
    for i in range(4):
        image, masks, _ = make_scene(np.random.default_rng([9, i]), 200, 240)
        same, inner, _ = make_scene(np.random.default_rng([9, i]), 200, 240, edge_coverage=0.75)
        assert np.array_equal(image, same)  # only the ground truth changes
        assert len(inner) <= len(masks) and np.stack(inner).sum(axis=0).max() == 1
        union, inner_union = np.any(masks, axis=0), np.any(inner, axis=0)
        assert not (inner_union & ~union).any() and inner_union.sum() < union.sum()
        # what is lost lies along the boundaries: within three pixels of the background or another instance
        lost = union & ~inner_union
        labels = np.argmax(np.stack([~union] + masks), axis=0).astype(np.uint8)
        near = cv2.dilate(labels, np.ones((7, 7), np.uint8)) != cv2.erode(labels, np.ones((7, 7), np.uint8))
        assert near[lost].all()


def test_cli_refuses_an_edge_coverage_below_one_half(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--images", "1", "--edge-coverage", "0.3"]) != 0
    assert "--edge-coverage must be in [0.5, 1), got 0.3" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    # the library refuses too: below one half an edge pixel could belong to two masks
    with pytest.raises(ValueError, match="edge_coverage must be in"):
        make_scene(np.random.default_rng(0), edge_coverage=0.3)
    with pytest.raises(ValueError, match="parts must be a probability"):
        make_scene(np.random.default_rng(0), parts=1.5)
    assert not (tmp_path / "s").exists()


def test_shadows_darken_only_what_the_object_leaves_uncovered():
    canvas = np.full((120, 120, 3), 200, np.float32)
    coverage = np.zeros((120, 120), np.float32)
    coverage[30:70, 40:80] = 1.0
    coverage[30:70, 39] = 0.5  # an anti-aliased edge column
    before = canvas.copy()
    _cast_shadow(canvas, coverage, np.random.default_rng(3))
    assert np.array_equal(canvas[coverage == 1], before[coverage == 1])  # the object keeps its pixels
    assert (canvas <= before).all() and (canvas < before - 20).any()  # darker only, somewhere clearly
    # beside the object's bottom, where a cast shadow starts
    assert (canvas[60:75, 30:90] < before[60:75, 30:90] - 1).any()


def test_shadows_zero_reproduces_earlier_scenes():
    # shadows=0 draws no random numbers: the categories pinned before --shadows existed come out again
    kinds = [make_scene(np.random.default_rng([7, i]), 200, 240, parts=0.0, shadows=0.0)[2] for i in range(3)]
    assert kinds == [[3], [3, 1, 4, 2], [1, 1, 3, 1, 2]]
    for i in range(3):
        image, masks, _ = make_scene(np.random.default_rng([10, i]), 200, 240, shadows=1.0)
        assert masks and np.stack(masks).sum(axis=0).max() == 1
    with pytest.raises(ValueError, match="shadows must be a probability"):
        make_scene(np.random.default_rng(0), shadows=-0.1)
