import cv2
import numpy as np
import pytest

from bpr_studio.core.edges import snap_to_edges


def _crossing(row: np.ndarray) -> float:
    """Where a falling profile crosses 0.5, interpolated between pixels."""
    i = int(np.argmax(row < 0.5))
    return i - 1 + (row[i - 1] - 0.5) / (row[i - 1] - row[i])


@pytest.mark.parametrize("last_inside", [30, 32])
def test_a_transition_a_pixel_off_an_edge_moves_onto_it(last_inside):
    """The photograph turns from red to grey between columns 31 and 32; the probability falls from 1
    to 0 one pixel inside or outside that edge. Snapped, it crosses 0.5 between columns 31 and 32."""
    image = np.zeros((1, 64, 64, 3), np.uint8)
    image[..., :32, :] = (200, 40, 30)
    image[..., 32:, :] = (90, 90, 90)
    x = np.arange(64, dtype=np.float32)
    probs = np.broadcast_to(np.clip(last_inside + 1 - x, 0, 1), (1, 64, 64)).astype(np.float32)
    snapped = snap_to_edges(image, probs, radius=2)
    assert _crossing(probs[0, 32]) == last_inside + 0.5
    assert 31 <= _crossing(snapped[0, 32]) <= 32
    assert snapped.shape == probs.shape and snapped.dtype == np.float32
    assert snapped.min() >= 0 and snapped.max() <= 1


def test_on_a_flat_crop_it_is_a_window_mean():
    """Where the guide has no texture the filter is the mean of the probabilities over the window
    (twice: the coefficients are averaged again), so a constant stays constant."""
    rng = np.random.default_rng(1)
    image = np.full((2, 16, 16, 3), 120, np.uint8)
    probs = rng.random((2, 16, 16)).astype(np.float32)
    box = lambda a: cv2.boxFilter(a, -1, (5, 5), borderType=cv2.BORDER_REFLECT)
    expected = np.stack([box(box(p)) for p in probs])
    np.testing.assert_allclose(snap_to_edges(image, probs, radius=2), expected, atol=1e-4)
    np.testing.assert_allclose(snap_to_edges(image, np.full((2, 16, 16), 0.7, np.float32), 2), 0.7, atol=1e-5)


@pytest.mark.parametrize("radius, count, side", [(1, 3, 16), (4, 3, 16), (2, 130, 16), (2, 20, 64)])
def test_each_patch_is_filtered_alone(radius, count, side):
    """Patches of a batch do not bleed into each other: the batch gives what each patch gives alone
    (130 of 16 px: more patches than OpenCV filters in one call; 20 of 64 px: filtered 8 at a time)."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (count, side, side, 3), dtype=np.uint8)
    probs = rng.random((count, side, side)).astype(np.float32)
    batch = snap_to_edges(image, probs, radius)
    assert batch.shape == probs.shape
    assert snap_to_edges(image[:0], probs[:0], radius).shape == (0, side, side)
    for k in range(count):
        np.testing.assert_allclose(batch[k], snap_to_edges(image[k:k + 1], probs[k:k + 1], radius)[0], atol=1e-6)
