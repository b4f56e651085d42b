"""Mask IoU and boundary F-score."""

import cv2
import numpy as np
import pytest

from bpr_studio.core.metrics import boundary_f_score, mask_boundary, mask_iou


def disk(shape=(120, 160), center=(80, 60), radius=35):
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, center, radius, 1, -1)
    return m.astype(bool)


def test_mask_iou():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    assert mask_iou(a, b) == 1.0
    a[:5] = True
    assert mask_iou(a, b) == 0.0
    b[:, :5] = True
    assert mask_iou(a, b) == pytest.approx(25 / 75)


def test_boundary_f_of_a_mask_with_itself_is_one():
    m = disk()
    assert boundary_f_score(m, m) == 1.0
    empty = np.zeros_like(m)
    assert boundary_f_score(empty, empty) == 1.0
    assert boundary_f_score(m, empty) == 0.0


def test_small_shift_stays_high_large_shift_drops():
    m = disk()
    one = np.roll(m, 1, axis=1)
    three = np.roll(m, 3, axis=1)
    assert boundary_f_score(one, m) > 0.95
    assert boundary_f_score(three, m) < 0.5
    assert boundary_f_score(three, m, tolerance=3.0) > 0.95


def test_confined_window_matches_whole_image():
    # the same pair of masks inside a small and a large canvas: working in the masks' window
    # must not depend on where the masks lie or how large the image is
    a = disk((80, 80), (40, 40), 25)
    b = np.roll(a, 2, axis=0)
    big_a = np.zeros((300, 300), bool)
    big_b = np.zeros((300, 300), bool)
    big_a[100:180, 100:180], big_b[100:180, 100:180] = a, b
    assert boundary_f_score(big_a, big_b) == pytest.approx(boundary_f_score(a, b))
    assert 0.0 < boundary_f_score(a, b) < 1.0
    # touching the image border: the border counts as boundary for both masks alike
    edge = disk((80, 80), (10, 40), 25)
    assert boundary_f_score(edge, edge) == 1.0


def test_mask_boundary_counts_the_image_border():
    m = np.ones((5, 5), bool)
    assert mask_boundary(m).sum() == 16
