"""The one instance matcher (core.matching) against plain numpy loops of the rules it replaced:
prediction -> best same-category, non-crowd ground truth with IoU > 0 (training, inspection,
oracle, adapt), and ground truth -> best same-category prediction even at IoU 0 (evaluation)."""

import numpy as np
import pytest

from bpr_studio.core.matching import match_instances
from bpr_studio.core.simulate import simulate_instances
from bpr_studio.io.coco import read_coco


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _best_ground_truth(pred, pred_cats, gt, gt_cats, crowd):
    """Per prediction: (index of the first best same-category non-crowd gt with IoU > 0, or -1; IoU)."""
    out = []
    for mask, cat in zip(pred, pred_cats):
        best, best_iou = -1, 0.0
        for j, (g, gcat) in enumerate(zip(gt, gt_cats)):
            if gcat == cat and not crowd[j] and _iou(mask, g) > best_iou:
                best, best_iou = j, _iou(mask, g)
        out.append((best, best_iou))
    return out


def _best_prediction(gt, gt_cats, crowd, pred, pred_cats):
    """Per non-crowd gt: (index of the first best same-category prediction, even at IoU 0, or -1; IoU)."""
    out = []
    for g, gcat, c in zip(gt, gt_cats, crowd):
        if c:
            continue
        same = [j for j, cat in enumerate(pred_cats) if cat == gcat]
        if not same:
            out.append((-1, 0.0))
            continue
        ious = [_iou(pred[j], g) for j in same]
        k = int(np.argmax(ious))
        out.append((same[k], ious[k]))
    return out


def _sample_images(mini_dataset):
    """Per image of the test fixture tests/data/mini_dataset: (gt (N,H,W), gt categories, crowd flags, pred (M,H,W),
    pred categories), with simulated predictions and the cases the rules are about: a crowd ground
    truth, a prediction of another category, an empty prediction, a prediction copying the crowd
    region, duplicated ground truth and predictions (ties)."""
    dataset = read_coco(mini_dataset / "data_dataset_coco" / "annotations.json", check_images=False)
    rng = np.random.default_rng(12)
    images = []
    for k, record in enumerate(dataset.images):
        gt = record.masks()
        gt = np.concatenate([gt, gt[:1]])  # a tie: the first ground truth twice
        gt_cats = [i.category_id for i in record.instances] + [record.instances[0].category_id]
        crowd = [j == 1 for j in range(len(gt))]
        simulated = simulate_instances(gt, rng, style=("maskrcnn", "quarter", "contour")[k % 3], box_jitter=0.2)
        pred = [m for _, m, _ in simulated]
        pred_cats = [gt_cats[j] if n % 4 else 99 for n, (j, _, _) in enumerate(simulated)]
        pred += [np.zeros_like(gt[0]), gt[1], pred[-1]]
        pred_cats += [gt_cats[0], gt_cats[1], pred_cats[-1]]
        images.append((gt, gt_cats, crowd, np.stack(pred), pred_cats))
    return images


def test_matches_the_numpy_rules_on_the_sample(mini_dataset):
    checked = 0
    for gt, gt_cats, crowd, pred, pred_cats in _sample_images(mini_dataset):
        index, iou = match_instances(pred, pred_cats, gt, gt_cats, crowd)
        expected = _best_ground_truth(pred, pred_cats, gt, gt_cats, crowd)
        assert index.tolist() == [j for j, _ in expected]
        assert iou.tolist() == pytest.approx([v for _, v in expected], abs=1e-12)
        assert (index >= 0).any() and (index < 0).any()

        keep = [j for j, c in enumerate(crowd) if not c]
        index, iou = match_instances(gt[keep], [gt_cats[j] for j in keep], pred, pred_cats, require_overlap=False)
        expected = _best_prediction(gt, gt_cats, crowd, pred, pred_cats)
        assert index.tolist() == [j for j, _ in expected]
        assert iou.tolist() == pytest.approx([v for _, v in expected], abs=1e-12)
        checked += len(pred)
    assert checked > 12


def test_masks_and_rles_give_the_same_matches(mini_dataset):
    from bpr_studio.core.rle import encode_rle

    gt, gt_cats, crowd, pred, pred_cats = _sample_images(mini_dataset)[0]
    from_masks = match_instances(pred, pred_cats, gt, gt_cats, crowd)
    from_rles = match_instances([encode_rle(m) for m in pred], pred_cats, [encode_rle(m) for m in gt], gt_cats, crowd)
    assert all(np.array_equal(a, b) for a, b in zip(from_masks, from_rles))


def test_same_class_non_crowd_and_empty_sets():
    gt = np.zeros((3, 10, 10), bool)
    gt[0, 0:5, 0:5] = True  # category 2
    gt[1, 2:8, 2:8] = True  # category 1, crowd
    gt[2, 3:9, 3:9] = True  # category 1
    a = np.zeros((1, 10, 10), bool)
    a[0, 2:8, 2:8] = True
    index, iou = match_instances(a, [1], gt, [2, 1, 1], [False, True, False])
    assert index.tolist() == [2] and iou[0] == pytest.approx(25 / 47)
    index, iou = match_instances(a, [3], gt, [2, 1, 1])
    assert index.tolist() == [-1] and iou.tolist() == [0.0]
    index, iou = match_instances(a, [1], gt[:0], [])
    assert index.tolist() == [-1] and iou.tolist() == [0.0]
    index, iou = match_instances(a[:0], [], gt, [2, 1, 1])
    assert index.shape == (0,) and iou.shape == (0,)
    far = np.zeros((1, 10, 10), bool)
    far[0, 9, 9] = True
    assert match_instances(far, [2], gt, [2, 1, 1])[0].tolist() == [-1]
    assert match_instances(far, [2], gt, [2, 1, 1], require_overlap=False)[0].tolist() == [0]
    empty = np.zeros((1, 10, 10), bool)
    assert match_instances(empty, [2], empty, [2])[0].tolist() == [-1]

