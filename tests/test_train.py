"""Training: patches from ground truth + predictions, a tiny run that learns, checkpoints that load and resume."""

import numpy as np
import pytest
import torch

from bpr_studio.cli import main
from bpr_studio.core.config import RefinerConfig
from bpr_studio.core.model import load_weights
from bpr_studio.core.patches import boundary_patches, crop_boxes
from bpr_studio.core.simulate import simulate_instances
from bpr_studio.core.synth import make_scene
from bpr_studio.core.train import PatchSet, TrainConfig, TrainInputError, image_patches, learning_rate, train


def tiny_patches(n_scenes=2, patch_size=32):
    sets = []
    for i in range(n_scenes):
        rng = np.random.default_rng([11, i])
        image, masks, kinds = make_scene(rng, 128, 128, max_objects=3)
        gt = np.stack(masks)
        sim = simulate_instances(gt, rng)
        pred = np.stack([c for _, c, _ in sim])
        sets.append(image_patches(image, gt, kinds, pred, [kinds[j] for j, _, _ in sim],
                                  config=RefinerConfig(patch_size=patch_size, min_size=0)))
    return PatchSet.concatenate(sets)


def test_image_patches_target_is_the_matched_ground_truth():
    image = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    gt = np.zeros((2, 80, 80), bool)
    gt[0, 10:50, 10:50] = True
    gt[1, 60:75, 60:75] = True
    pred = np.zeros((2, 80, 80), bool)
    pred[0] = np.roll(gt[0], 2, 0)
    pred[1, 0:5, 0:5] = True  # overlaps no ground truth: no patches
    ps = image_patches(image, gt, [1, 1], pred, [1, 1], config=RefinerConfig(patch_size=16, min_size=0))
    boxes = boundary_patches(pred[0], 16, 0.25)
    assert len(ps) == len(boxes) > 0
    assert np.array_equal(ps.target, crop_boxes(gt[0], boxes))
    assert np.array_equal(ps.coarse, crop_boxes(pred[0], boxes))
    assert np.array_equal(ps.images, crop_boxes(image, boxes))


def test_patchset_round_trip(tmp_path):
    ps = tiny_patches(1)
    path = ps.save(tmp_path / "p.npz")
    back = PatchSet.load(path)
    for name in ("images", "coarse", "target"):
        assert np.array_equal(getattr(back, name), getattr(ps, name))
    empty = PatchSet.load(PatchSet.empty(16).save(tmp_path / "empty.npz"))  # a dataset that gave no patches
    assert len(empty) == 0 and empty.images.shape == (0, 16, 16, 3)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.npz"):
        PatchSet.load(tmp_path / "bad.npz")


def test_learning_rate_poly_by_iterations_or_time():
    c = TrainConfig(iters=100, max_seconds=10.0)
    assert learning_rate(c, 0, 0.0) == pytest.approx(0.01)
    assert learning_rate(c, 50, 9.0) == learning_rate(c, 90, 0.0)
    assert learning_rate(c, 100, 0.0) == pytest.approx(1e-4)


def test_tiny_run_learns_and_writes_loadable_checkpoints(tmp_path):
    torch.set_num_threads(1)
    ps = tiny_patches(2).subset(np.arange(8))
    config = TrainConfig(model="hr18s", input_size=32, iters=14, batch_size=8, val_patches=0, lr=0.01)
    out = tmp_path / "m.pt"
    losses = train(ps, out, config, progress=False)
    assert len(losses) == 14
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    model, info = load_weights(out)
    assert info["arch"] == "hr18s" and info["meta"]["iteration"] == 14
    assert info["patch_size"] == 32  # tiny_patches' side: the Refiner warns when run at another
    with torch.no_grad():
        assert model(torch.zeros(1, 4, 32, 32)).shape == (1, 2, 32, 32)
    more = train(ps, out, TrainConfig(model="hr18s", input_size=32, iters=16, batch_size=8, val_patches=0),
                 resume=out.with_name("m.pt.ckpt"), progress=False)
    assert len(more) == 2
    assert load_weights(out)[1]["meta"]["iteration"] == 16


def test_init_starts_from_a_weights_file(tmp_path):
    torch.set_num_threads(1)
    ps = tiny_patches(2).subset(np.arange(8))
    config = TrainConfig(model="hr18s", input_size=32, iters=3, batch_size=8, val_patches=0, seed=5)  # another random init
    train(ps, tmp_path / "a.pt", config, progress=False)
    start = load_weights(tmp_path / "a.pt")[0]
    losses_init = train(ps, tmp_path / "b.pt", TrainConfig(model="hr18s", input_size=32, iters=1, batch_size=8, val_patches=0,
                                                           lr=1e-12), init=tmp_path / "a.pt", progress=False)
    after = load_weights(tmp_path / "b.pt")[0]
    for (name, a), b in zip(start.state_dict().items(), after.state_dict().values()):
        if a.is_floating_point() and "running" not in name:  # lr ~0: the weights are the ones started from
            torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)
    assert len(losses_init) == 1
    with pytest.raises(ValueError, match="not both"):
        train(ps, tmp_path / "c.pt", config, init=tmp_path / "a.pt", resume=tmp_path / "a.pt.ckpt", progress=False)


def test_cli_trains_from_a_coco_dataset(tmp_path):
    data = tmp_path / "synth"
    assert main(["synth", "--out", str(data), "--images", "1", "--seed", "4"]) == 0
    out = tmp_path / "model.pt"
    assert main(["train", "--annotations", str(data / "annotations.json"), "--predictions",
                 str(data / "predictions.json"), "--out", str(out), "--iters", "2", "--batch-size", "2",
                 "--input-size", "32", "--save-patches", str(tmp_path / "p.npz"), "--quiet", "--threads", "1",
                 "--log", str(tmp_path / "train.log")]) == 0
    assert load_weights(out)[1]["meta"]["iteration"] == 2
    log = (tmp_path / "train.log").read_text()
    assert f"{data / 'annotations.json'} + {data / 'predictions.json'}: " in log and "finished at iter 2" in log
    assert len(PatchSet.load(tmp_path / "p.npz")) > 0


def test_ignore_band_leaves_out_pixels_near_the_true_boundary(tmp_path):
    from bpr_studio.core.train import loss_weights

    target = np.zeros((2, 16, 16), bool)
    target[:, :, :8] = True
    w = loss_weights(target, np.array([0, 2], np.uint8))
    assert w[0].min() == 1.0  # exact patch: every pixel counts
    assert (w[1][:, 6:10] == 0).all() and (w[1][:, :6] == 1).all() and (w[1][:, 10:] == 1).all()
    ps = PatchSet(np.zeros((2, 16, 16, 3), np.uint8), target, target).with_band(2)
    back = PatchSet.load(ps.save(tmp_path / "band.npz"))
    assert back.band.tolist() == [2, 2]
    assert PatchSet.concatenate([back, PatchSet(back.images, back.coarse, back.target)]).band.tolist() == [2, 2, 0, 0]


def test_patch_files_load_into_one_set_with_their_bands(tmp_path):
    rng = np.random.default_rng(0)
    parts = [PatchSet(rng.integers(0, 256, (k, 8, 8, 3), dtype=np.uint8), rng.random((k, 8, 8)) < 0.5,
                      rng.random((k, 8, 8)) < 0.5).with_band(b) for k, b in ((3, 0), (5, 2))]
    paths = [part.save(tmp_path / f"p{i}.npz") for i, part in enumerate(parts)]
    assert [PatchSet.shape(path) for path in paths] == [(3, 8, 8, 3), (5, 8, 8, 3)]
    whole, expected = PatchSet.load_all(paths), PatchSet.concatenate(parts)
    for name in ("images", "coarse", "target", "band"):
        assert np.array_equal(getattr(whole, name), getattr(expected, name)), name
    PatchSet(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), bool), np.zeros((1, 4, 4), bool)).save(tmp_path / "s.npz")
    with pytest.raises(TrainInputError, match="s.npz: patches of 4 px, expected 8 px"):
        PatchSet.load_all([paths[0], tmp_path / "s.npz"])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(TrainInputError, match="bad.npz: not a BPR Studio patch file"):
        PatchSet.load_all([tmp_path / "bad.npz"])


def test_boundary_weight_weighs_up_exact_boundaries_only():
    from bpr_studio.core.train import loss_weights

    target = np.zeros((2, 16, 16), bool)
    target[:, :, :8] = True
    w = loss_weights(target, np.array([0, 2], np.uint8), boundary_weight=4.0)
    assert (w[0][:, 7:9] == 4.0).all() and (w[0][:, :7] == 1).all() and (w[0][:, 9:] == 1).all()
    assert (w[1][:, 6:10] == 0).all() and (w[1][:, :6] == 1).all()  # a banded patch keeps its band, no boundary weight
    with pytest.raises(ValueError, match="boundary_weight"):
        TrainConfig(boundary_weight=0)


def test_mask_jitter_moves_the_coarse_boundary_by_one_pixel_only():
    from bpr_studio.core.train import augment

    images = np.full((64, 16, 16, 3), 128, np.uint8)
    coarse = np.zeros((64, 16, 16), bool)
    coarse[:, 4:12, 4:12] = True
    target = coarse.copy()
    rng = np.random.default_rng(0)
    _, plain, _ = augment(images, coarse, target, np.random.default_rng(0))
    assert (plain == coarse).all()  # a centred square: flips leave it as it is
    _, moved, kept = augment(images, coarse, target, rng, mask_jitter=1.0)
    assert (kept == target).all()  # the target is never jittered
    areas = moved.sum(axis=(1, 2))
    # 8x8 = 64 px; dilated by a 3x3 cross: 64 + 4 * 8 = 96; eroded: 6x6 = 36; both happen
    assert set(areas.tolist()) == {36, 96}
    _, half, _ = augment(images, coarse, target, np.random.default_rng(1), mask_jitter=0.5)
    assert 0 < (half.sum(axis=(1, 2)) == 64).sum() < 64
    # up to 2 px: grown twice by a cross, two rows along each side and one pixel at each corner;
    # shrunk twice, a 4x4 square
    _, far, _ = augment(images, coarse, target, np.random.default_rng(2), mask_jitter=1.0, mask_jitter_px=2)
    assert set(far.sum(axis=(1, 2)).tolist()) == {16, 36, 96, 64 + 4 * 2 * 8 + 4}
    with pytest.raises(ValueError, match="mask_jitter"):
        TrainConfig(mask_jitter=1.5)
    with pytest.raises(ValueError, match="mask_jitter_px"):
        TrainConfig(mask_jitter_px=0)


def test_image_patches_skip_instances_below_the_minimum_size():
    image = np.zeros((200, 200, 3), np.uint8)
    gt = np.zeros((2, 200, 200), bool)
    gt[0, 10:150, 10:150] = True
    gt[1, 170:190, 170:190] = True
    ps = image_patches(image, gt, [1, 1], gt.copy(), [1, 1], config=RefinerConfig(patch_size=32, min_size=96))
    assert len(ps) > 0
    small_only = image_patches(image, gt[1:], [1], gt[1:].copy(), [1], config=RefinerConfig(patch_size=32, min_size=96))
    assert len(small_only) == 0


def test_training_inputs_are_the_refiners_inputs():
    """Batches travel compact (uint8, bool) and become the network's input on the training device: the
    same input the Refiner builds (patches.network_inputs), at any input size."""
    from bpr_studio.core.patches import network_inputs
    from bpr_studio.core.train import batch_arrays, batch_tensors

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    coarse, target = rng.random((3, 32, 32)) > 0.5, np.zeros((3, 32, 32), bool)
    target[:, 8:24, 8:24] = True
    raw = batch_arrays(images, coarse, target, np.array([0, 2, 0], np.uint8))
    assert [a.dtype for a in raw] == [torch.uint8, torch.bool, torch.bool, torch.float32]
    for size in (32, 64):
        x, t, w = batch_tensors(*raw, size)
        assert torch.equal(x, network_inputs(images, coarse, size))
        assert t.shape == w.shape == (3, size, size) and t.dtype == torch.int64
        assert int(t[0].sum()) == (16 * size // 32) ** 2  # the target square, scaled
        assert float(w[1].min()) == 0.0 and float(w[0].min()) == 1.0  # the band leaves out pixels of patch 1 alone


def test_batches_depend_on_the_seed_and_iteration_alone():
    from bpr_studio.core.train import TrainBatches, batch_loader

    ps = tiny_patches(2)
    train_index = np.arange(3, len(ps))
    config = TrainConfig(model="hr18s", input_size=32, iters=2 * (len(train_index) // 4) + 1, batch_size=4)
    batches = TrainBatches(ps, train_index, config)
    per_epoch = len(train_index) // 4
    epoch = np.concatenate([batches.indices(i) for i in range(per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch) == per_epoch * 4  # an epoch visits a patch at most once
    assert set(epoch.tolist()) <= set(train_index.tolist())
    assert not np.array_equal(batches.indices(per_epoch), batches.indices(0))  # the next epoch reshuffles
    here = list(batch_loader(batches, 1, workers=0))
    forked = list(batch_loader(TrainBatches(ps, train_index, config), 1, workers=2))
    assert len(here) == len(forked) == config.iters - 1  # from batch 1, as a resumed run starts
    for a, b in zip(here, forked):
        for u, v in zip(a, b):
            assert torch.equal(u, v)
    assert torch.equal(TrainBatches(ps, train_index, config)[3][0], here[2][0])


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    torch.set_num_threads(1)
    ps = tiny_patches(2).subset(np.arange(12))
    config = TrainConfig(model="hr18s", input_size=32, iters=4, batch_size=4, val_patches=0, checkpoint_seconds=0)
    whole = train(ps, tmp_path / "whole.pt", config, progress=False)
    first = train(ps, tmp_path / "part.pt", TrainConfig(**{**config.__dict__, "max_seconds": 1e-9}), progress=False)
    assert first == []  # a time budget already spent: a checkpoint at iteration 0
    rest = train(ps, tmp_path / "part.pt", config, resume=tmp_path / "part.pt.ckpt", progress=False)
    assert rest == pytest.approx(whole)


def test_cli_refuses_a_device_that_is_not_there(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--patches", str(tmp_path / "none.npz"), "--out", str(tmp_path / "m.pt"),
                 "--device", "cuda"]) != 0
    assert "CUDA is not available" in capsys.readouterr().err


def sure_background_teacher(path, input_size=32):
    """A weights file of an hr18s that calls every pixel background (p = 0.9997) whatever it sees."""
    from bpr_studio.core.model import build_model, save_weights

    net = build_model("hr18s")
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 2][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([4.0, -4.0]))
    return save_weights(path, net.eval(), "hr18s", meta={"train": {"input_size": input_size}})


def test_distillation_pulls_the_network_towards_its_teacher(tmp_path):
    from bpr_studio.core.train import batch_inputs

    torch.set_num_threads(1)
    ps = tiny_patches(2).subset(np.arange(8))
    teacher = sure_background_teacher(tmp_path / "teacher.pt", input_size=32)
    config = TrainConfig(model="hr18s", input_size=16, iters=12, batch_size=8, val_patches=0, seed=3)
    train(ps, tmp_path / "start.pt", TrainConfig(**{**config.__dict__, "iters": 0}), progress=False)
    losses = train(ps, tmp_path / "student.pt", TrainConfig(**{**config.__dict__, "teacher": str(teacher),
                                                                  "distill": 1.0}), progress=False)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # the teacher's term alone (teacher at 32, student at 16)
    x = batch_inputs(torch.from_numpy(ps.images), torch.from_numpy(ps.coarse), 16)

    def foreground(path):
        with torch.no_grad():
            return float(torch.softmax(load_weights(path)[0](x), 1)[:, 1].mean())

    plain = train(ps, tmp_path / "plain.pt", config, progress=False)
    # from 0.50 at the start, the targets alone take it to 0.30 in these 12 steps, the teacher to 0.05
    assert (foreground(tmp_path / "student.pt") < 0.1 < 0.25 < foreground(tmp_path / "plain.pt")
            < foreground(tmp_path / "start.pt"))
    lines = []
    unweighted = train(ps, tmp_path / "zero.pt", TrainConfig(**{**config.__dict__, "teacher": str(teacher),
                                                                 "distill": 0.0}), progress=False, log=lines.append)
    assert unweighted == pytest.approx(plain)  # with no weight, the teacher changes nothing
    assert any("distill 0: the teacher" in line and "is not run" in line for line in lines)


def test_cli_refuses_a_teacher_it_cannot_use_before_extracting_patches(tmp_path, capsys):
    missing = tmp_path / "teacher.pt"
    assert main(["train", "--patches", str(tmp_path / "none.npz"), "--out", str(tmp_path / "m.pt"),
                 "--teacher", str(missing)]) != 0
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err
    with pytest.raises(ValueError, match="distill"):
        TrainConfig(distill=1.5)
