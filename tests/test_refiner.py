"""The Refiner: device choice, batching, reassembly into full masks, callbacks and cancel."""

import logging

import numpy as np
import pytest
import torch

from bpr_studio.core import refiner as refiner_module
from bpr_studio.core.config import RefinerConfig
from bpr_studio.core.edges import snap_to_edges
from bpr_studio.core.model import build_model, save_weights
from bpr_studio.core.refiner import DeviceError, RefineCancelled, Refiner, pick_device


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "hr18s.pt"
    save_weights(path, build_model("hr18s"), "hr18s", meta={"input_size": 32}, half=False)
    return path


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:90, :120]
    masks = np.stack([
        (yy - 40) ** 2 + (xx - 50) ** 2 < 25 ** 2,      # a disc
        (yy > 60) & (xx > 90),                           # touches the bottom-right corner
        np.zeros((90, 120), bool),                       # empty
    ])
    return image, masks


def make_refiner(weights, **config):
    config = {"min_size": 0, **config}
    return Refiner(RefinerConfig(patch_size=16, input_size=32, **config), weights=weights, device="cpu", fast=False)


def test_pick_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"^cuda:2 is not available on this machine \(found: CUDA x2, MPS, CPU\)$"):
        pick_device("cuda:2")


def test_device_name(weights):
    assert make_refiner(weights).device_name == "CPU"


def test_refine_reassembles_patches_and_keeps_the_rest(weights, scene):
    image, masks = scene
    refiner = make_refiner(weights, batch_size=8)
    results = refiner.refine(image, masks)
    assert [r.index for r in results] == [0, 1, 2]
    for coarse, r in zip(masks, results):
        assert r.mask.shape == coarse.shape and r.mask.dtype == bool
        assert r.boxes.shape[1] == 4 and r.probs.shape == (len(r.boxes), 16, 16)
        covered = np.zeros(coarse.shape, bool)
        for x0, y0, x1, y1 in r.boxes:
            covered[y0:y1, x0:x1] = True
        np.testing.assert_array_equal(r.mask[~covered], coarse[~covered])   # untouched pixels kept
        # inside the patches, the mask is the average of the patch probabilities thresholded at 0.5,
        # moved by the margin towards the coarse value
        total = np.zeros(coarse.shape)
        count = np.zeros(coarse.shape)
        for (x0, y0, x1, y1), p in zip(r.boxes, r.probs):
            total[y0:y1, x0:x1] += p
            count[y0:y1, x0:x1] += 1
        threshold = np.where(coarse, 0.5 - refiner.config.margin, 0.5 + refiner.config.margin)
        average = total / np.maximum(count, 1)
        decided = covered & (np.abs(average - threshold) > 1e-4)
        np.testing.assert_array_equal(r.mask[decided], (average > threshold)[decided])
    assert len(results[2].boxes) == 0 and not results[2].mask.any()
    assert (results[1].boxes[:, 2] == 120).any() and (results[1].boxes[:, 3] == 90).any()


def test_batch_size_does_not_change_the_result(weights, scene):
    image, masks = scene
    a = make_refiner(weights, batch_size=1).refine(image, masks)
    b = make_refiner(weights, batch_size=5).refine(image, masks)
    c = make_refiner(weights, batch_size=500).refine(image, masks)
    for ra, rb, rc in zip(a, b, c):
        np.testing.assert_allclose(ra.probs, rb.probs, atol=1e-4)
        np.testing.assert_allclose(ra.probs, rc.probs, atol=1e-4)
        np.testing.assert_array_equal(ra.boxes, rc.boxes)
        assert np.count_nonzero(ra.mask != rc.mask) <= 2  # only pixels that sit on 0.5 may flip


def test_on_instance_streams_results_in_order(weights, scene):
    image, masks = scene
    seen = []
    make_refiner(weights, batch_size=4).refine(image, masks, on_instance=lambda r: seen.append(r.index))
    assert seen == [0, 1, 2]


def test_on_batch_counts_patches(weights, scene):
    image, masks = scene
    calls = []
    results = make_refiner(weights, batch_size=4).refine(image, masks, on_batch=lambda *a: calls.append(a))
    total = sum(len(r.boxes) for r in results)
    assert total > 8
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [done for done, _ in calls] == list(range(0, total, 4)) + [total]


def test_should_stop_cancels(weights, scene):
    image, masks = scene
    polls = []

    def stop_on_second_batch():
        polls.append(1)
        return len(polls) >= 2

    seen = []
    with pytest.raises(RefineCancelled):
        make_refiner(weights, batch_size=2).refine(image, masks, on_instance=lambda r: seen.append(r.index),
                                                   should_stop=stop_on_second_batch)
    assert len(polls) == 2 and 1 not in seen


def test_bad_inputs_are_refused(weights, scene):
    image, masks = scene
    refiner = make_refiner(weights)
    with pytest.raises(ValueError, match="masks must be"):
        refiner.refine(image, masks[:, :-1])
    with pytest.raises(ValueError, match="image must be"):
        refiner.refine(image[..., 0], masks)


def test_default_weights_path_is_in_the_package():
    path = refiner_module.default_weights_path()
    assert path.name.endswith(".pt") and path.parent.name == "weights"


def test_a_patch_size_other_than_the_trained_one_is_warned_about_once(tmp_path, caplog):
    path = tmp_path / "patch32.pt"
    save_weights(path, build_model("hr18s"), "hr18s", meta={"train": {"input_size": 32, "patch_size": 32}})
    with caplog.at_level(logging.WARNING, logger="bpr_studio.core.refiner"):
        Refiner(RefinerConfig(patch_size=32), weights=path, device="cpu", fast=False)
        assert not caplog.records
        for _ in range(2):
            Refiner(RefinerConfig(patch_size=64), weights=path, device="cpu", fast=False)
    assert len(caplog.records) == 1
    assert "patch32.pt was trained on 32-px patches; refining with 64-px ones" in caplog.text


def test_input_size_comes_from_the_weights_unless_given(tmp_path):
    path = tmp_path / "trained48.pt"
    save_weights(path, build_model("hr18s"), "hr18s", meta={"train": {"input_size": 48}})
    assert Refiner(RefinerConfig(patch_size=16), weights=path, device="cpu", fast=False).config.input_size == 48
    given = Refiner(RefinerConfig(patch_size=16, input_size=32), weights=path, device="cpu", fast=False)
    assert given.config.input_size == 32
    bare = tmp_path / "bare.pt"
    save_weights(bare, build_model("hr18s"), "hr18s", meta=None)
    assert Refiner(weights=bare, device="cpu", fast=False).config.input_size == 128


def test_weights_that_forbid_int8_refine_in_float32(tmp_path):
    """A weights file whose meta says int8 False (the shipped precise model) gets float32 ONNX Runtime
    on the fast CPU path, never an int8 graph; others get int8."""
    pytest.importorskip("onnxruntime")
    model = build_model("hr18s")
    for int8, expected in ((False, "onnxruntime"), (None, "onnxruntime-int8")):
        path = tmp_path / f"w{int8}.pt"
        save_weights(path, model, "hr18s", meta={"train": {"input_size": 32}, **({} if int8 is None else {"int8": int8})})
        refiner = Refiner(RefinerConfig(patch_size=16), weights=path, device="cpu")
        assert refiner._forward.mode == expected


def test_instances_smaller_than_min_size_keep_their_coarse_mask(weights, scene):
    image, masks = scene
    # the disc's box is 49 px on a side, the corner block's 29 px
    refiner = make_refiner(weights, min_size=40)
    assert len(refiner.patches(masks[0])) > 0 and len(refiner.patches(masks[1])) == 0
    results = refiner.refine(image, masks)
    assert len(results[1].boxes) == 0 and len(results[1].probs) == 0
    np.testing.assert_array_equal(results[1].mask, masks[1])
    assert len(make_refiner(weights, min_size=50).patches(masks[0])) == 0
    assert len(make_refiner(weights, min_size=49).patches(masks[0])) > 0
    with pytest.raises(ValueError, match="min_size"):
        RefinerConfig(min_size=-1)
    for margin in (-0.1, 0.5):
        with pytest.raises(ValueError, match="margin"):
            RefinerConfig(margin=margin)
    with pytest.raises(ValueError, match="max_shift"):
        RefinerConfig(max_shift=-1)
    with pytest.raises(ValueError, match="snap must be >= 0"):
        RefinerConfig(snap=-1)
    assert RefinerConfig().changed() == ""
    assert RefinerConfig(margin=0.1, max_shift=3).changed() == "margin 0.1, max_shift 3"


def test_mirror_averages_each_patch_with_its_mirror_image(weights, scene):
    """mirror: each patch's logits are the mean of the network's on the patch and, mirrored back, on
    the patch mirrored left-right (the test network is not symmetric, so this differs from one pass)."""
    image, masks = scene
    # mirror: on by default; snap off here, so the network's own probabilities are compared
    plain, mirrored = make_refiner(weights, mirror=False, snap=0), make_refiner(weights, snap=0)
    crops = np.ascontiguousarray(image[:32, :32][None].repeat(3, 0)), np.zeros((3, 32, 32), bool)
    crops[1][:, :, :12] = True  # a left-right asymmetric mask
    x = refiner_module.network_inputs(*crops, 32, **plain._norm)
    with torch.no_grad():
        logits = (plain.model(x) + plain.model(x.flip(-1)).flip(-1)) / 2
    expected = refiner_module.patch_probabilities(refiner_module.foreground_probability(logits), 16)
    np.testing.assert_allclose(mirrored._patch_probabilities(*crops), expected, atol=1e-5)
    assert not np.allclose(plain._patch_probabilities(*crops), expected, atol=1e-3)  # the network is not symmetric
    refined = mirrored.refine(image, masks)
    assert [r.mask.shape for r in refined] == [m.shape for m in masks]


def test_snap_filters_each_patch_with_its_image_crop(weights, scene):
    """snap: the patch probabilities are the guided filter (core.edges) of the unsnapped ones, with
    the image crops as guides, at crop resolution before the padding is cut away."""
    image, masks = scene
    unsnapped, snapped = make_refiner(weights, padding=4, snap=0), make_refiner(weights, padding=4)  # default: 2
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 255, (3, 24, 24, 3), dtype=np.uint8), np.zeros((3, 24, 24), bool)
    crops[1][:, :, :12] = True
    x = refiner_module.network_inputs(*crops, 32, **unsnapped._norm)
    with torch.no_grad():
        logits = (unsnapped.model(x) + unsnapped.model(x.flip(-1)).flip(-1)) / 2
    whole = refiner_module.patch_probabilities(refiner_module.foreground_probability(logits), 24)
    expected = snap_to_edges(crops[0], whole, 2)[:, 4:20, 4:20]
    np.testing.assert_allclose(snapped._patch_probabilities(*crops), expected, atol=1e-6)
    # the untrained network's probabilities are nearly flat, so the filter moves them only a little
    assert np.abs(unsnapped._patch_probabilities(*crops) - expected).max() > 1e-5
    refined = snapped.refine(image, masks)
    assert [r.mask.shape for r in refined] == [m.shape for m in masks]
