"""The cached layer's partial redraw (a brush stroke) outlines exactly as a full redraw does."""

import numpy as np

from bpr_studio.gui import overlay


def test_outline_of_a_part_equals_the_part_of_the_outline():
    rng = np.random.default_rng(0)
    for _ in range(300):
        mask = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) > 0.3
        r0 = int(rng.integers(0, mask.shape[0]))
        r1 = int(rng.integers(r0 + 1, mask.shape[0] + 1))
        c0 = int(rng.integers(0, mask.shape[1]))
        c1 = int(rng.integers(c0 + 1, mask.shape[1] + 1))
        assert np.array_equal(overlay._outline_part(mask, r0, r1, c0, c1), overlay.outline_of(mask)[r0:r1, c0:c1])


def test_repainting_a_region_matches_a_full_label_map():
    rng = np.random.default_rng(1)
    crops = []
    for j in range(6):
        mask = rng.random((40, 50)) > 0.4
        crops.append((j, (int(rng.integers(0, 60)), int(rng.integers(0, 40)), mask)))
    full = overlay.label_map((90, 120), crops)
    labels = full.copy()
    labels[20:50, 30:70] = 0
    overlay.paint_labels(labels, crops, (30, 20, 70, 50))
    assert np.array_equal(labels, full)
