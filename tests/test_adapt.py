"""Adaptation: pairs from corrections, the guard, `bpr-studio adapt`, the session's weights, the window end to end."""

import json

import cv2
import numpy as np
import pytest

from bpr_studio.core import adapt as core_adapt
from bpr_studio.core.adapt import AdaptError, adapt_weights, correction_patches, split_holdout
from bpr_studio.core.refiner import Refiner
from bpr_studio.core.simulate import coarse_mask
from bpr_studio.io.coco import read_coco, write_coco, write_coco_results
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance

TINY = 0.002  # minutes: one training slice of one iteration (train() always runs one)


def _scene(rng, size=288):
    """An image with three ellipses of their own colour and their masks (3, H, W) bool."""
    image = np.full((size, size, 3), 90, np.uint8)
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    masks = []
    for k, (cx, cy) in enumerate(((75, 75), (210, 80), (140, 210))):
        mask = np.zeros((size, size), np.uint8)
        cv2.ellipse(mask, (cx, cy), (55, 45), 30 * k, 0, 360, 1, -1)
        image[mask > 0] = (200, 60 + 60 * k, 40)
        masks.append(mask > 0)
    return image, np.stack(masks)


@pytest.fixture
def tiny_dataset(tmp_path):
    """Three 288 px images, three instances each: annotations.json (final masks), predictions.json (coarse)."""
    rng = np.random.default_rng(0)
    gt_records, pred_records = [], []
    for i in range(3):
        image, masks = _scene(rng)
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), image[:, :, ::-1])
        gt_records.append(ImageRecord(path, 288, 288, [Instance.from_mask(m, 1) for m in masks], i + 1))
        coarse = [coarse_mask(m, rng, box_jitter=0.04) for m in masks]
        pred_records.append(ImageRecord(path, 288, 288, [Instance.from_mask(c, 1, score=0.9) for c in coarse], i + 1))
    write_coco(Dataset(gt_records, {1: "blob"}), tmp_path / "annotations.json")
    write_coco_results(Dataset(pred_records, {1: "blob"}), tmp_path / "predictions.json")
    return tmp_path


def _corrections(folder):
    from bpr_studio.pipeline.datasets import corrections_from_datasets
    from bpr_studio.io.coco import read_coco_results

    gt = read_coco(folder / "annotations.json")
    return corrections_from_datasets(gt, read_coco_results(folder / "predictions.json", gt))


def test_split_holdout_takes_a_fifth_and_at_least_three():
    assert split_holdout(30).sum() == 6
    assert split_holdout(6).sum() == 3
    assert np.array_equal(split_holdout(30, seed=1), split_holdout(30, seed=1))
    with pytest.raises(AdaptError, match="at least 6"):
        split_holdout(5)


def test_correction_patches_target_the_final_mask(tiny_dataset):
    image = _corrections(tiny_dataset)[0]
    pixels = image.read()
    alone = correction_patches(pixels, image.coarse[0], image.final[0], np.random.default_rng(0), simulated=0)
    more = correction_patches(pixels, image.coarse[0], image.final[0], np.random.default_rng(0), simulated=2)
    assert len(alone) > 0 and len(more) > 2 * len(alone) - 5
    assert not np.array_equal(alone.coarse, alone.target)  # the coarse mask is the input, the final one the target
    drawn = np.zeros_like(image.final[0])  # nothing to start from: only simulated pairs
    assert len(correction_patches(pixels, drawn, image.final[0], np.random.default_rng(0), simulated=0)) == 0


def test_guard_keeps_the_base_weights_when_nothing_can_beat_them(tiny_dataset, tmp_path):
    """Constructed: every final mask is exactly what the base weights make of its coarse mask, so the base
    scores F = IoU = 1 on the held-out instances and no adapted weights can beat them."""
    images = _corrections(tiny_dataset)
    base = Refiner(fast=False)  # as the guard refines: plain fp32, not the int8 fast path
    for image in images:
        image.final = [r.mask for r in base.refine(image.read(), np.stack(image.coarse))]
    out = tmp_path / "adapted.pt"
    result = adapt_weights(images, out, minutes=TINY, threads=1, lr=0.05)
    assert result.before == {"boundary_f": 1.0, "iou": 1.0}
    assert not result.kept and result.out is None and not out.exists()
    assert "not kept" in result.message and result.holdout_instances == 3 and result.train_instances == 6


def test_too_few_corrections_say_how_many_are_needed(tiny_dataset, tmp_path):
    images = _corrections(tiny_dataset)[:1]
    with pytest.raises(AdaptError, match="3 corrected instance"):
        adapt_weights(images, tmp_path / "a.pt", minutes=TINY)


def test_cli_adapt_writes_weights_only_when_kept_and_they_load(tiny_dataset, tmp_path, monkeypatch, capsys):
    from bpr_studio.cli import main
    from bpr_studio.core.model import load_weights
    from bpr_studio.core.refiner import default_weights_path

    out = tmp_path / "adapted.pt"
    args = ["adapt", "--annotations", str(tiny_dataset / "annotations.json"),
            "--predictions", str(tiny_dataset / "predictions.json"), "--out", str(out),
            "--minutes", str(TINY), "--threads", "1"]
    monkeypatch.setattr(core_adapt, "beats", lambda after, before: False)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "9 corrected instance(s) on 3 image(s)" in text and "base weights:" in text
    assert "nothing written" in text and not out.exists()

    monkeypatch.setattr(core_adapt, "beats", lambda after, before: True)
    assert main(args) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    _, info = load_weights(out)
    base_meta = load_weights(default_weights_path())[1]["meta"]
    assert info["meta"]["adapted"]["train_instances"] == 6
    assert info["meta"]["train"]["input_size"] == base_meta["train"]["input_size"]  # the base's training config kept
    refined = tmp_path / "refined.json"
    assert main(["refine", "--images", str(tiny_dataset), "--predictions",
                 str(tiny_dataset / "predictions.json"), "--weights", str(out), "--out", str(refined)]) == 0
    assert len(json.loads(refined.read_text())) == 9


def test_session_remembers_weights_and_source(tiny_dataset, tmp_path, capsys):
    from bpr_studio.session import open_session
    from bpr_studio.session.adapt import adapted_weights_path, corrected_count, reopen_session

    path = tmp_path / "s.bprsession"
    session = open_session(tiny_dataset / "annotations.json", predictions=tiny_dataset / "predictions.json",
                           session_path=path)
    assert adapted_weights_path(session) == tmp_path / "s.adapted.pt"
    session.set_refined(0, 0, session.images[0].instances[0].coarse.copy())
    session.accept(0, 0)
    session.reject(0, 1)
    session.accept(1, 0)  # accepted without a refinement: not a correction
    session.paint(1, 1, np.array([[30.0, 30.0]]), 4.0)
    session.set_weights(tmp_path / "w.pt")
    assert corrected_count(session) == 2
    session.store.close()  # the journal holds the weights line; no snapshot written since
    again = reopen_session(path)
    assert again.weights == str(tmp_path / "w.pt") and corrected_count(again) == 2
    again.set_weights(None)
    again.close()
    assert reopen_session(path).weights is None
    from bpr_studio.cli import main

    assert main(["adapt", "--session", str(path), "--out", str(tmp_path / "a.pt")]) == 2  # 2 corrections: too few
    assert "2 corrected instance(s) on 2 image(s)" in capsys.readouterr().out
    old = tmp_path / "old.bprsession"
    old.write_text(json.dumps({"format": "bpr-studio-session", "version": 1}))
    with pytest.raises(ValueError, match="does not name its dataset"):
        reopen_session(old)


def test_choosing_weights_trained_on_other_patches_takes_their_patch_size(qtbot, tiny_dataset, tmp_path):
    from bpr_studio.core.model import build_model, save_weights
    from bpr_studio.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_dataset(tiny_dataset / "annotations.json", predictions=tiny_dataset / "predictions.json")
    assert window.view_controls.patch_size.value() == 64
    path = save_weights(tmp_path / "small.pt", build_model("hr18s"), "hr18s",
                        meta={"train": {"input_size": 64, "patch_size": 32}})
    assert window.adapt.choose_weights(path)
    assert window.view_controls.patch_size.value() == 32 and window.config.patch_size == 32
    assert window.adapt.last_message == "weights in use: small.pt; patch size 32 px, as they were trained"
    window.close()
    again = MainWindow()  # the session remembers the weights; their patch size comes with them
    qtbot.addWidget(again)
    assert again.open_dataset(tiny_dataset / "annotations.json", predictions=tiny_dataset / "predictions.json")
    assert again.view_controls.patch_size.value() == 32
    again.actions["default_weights"].trigger()  # the shipped weights were trained on 64-px patches
    assert again.view_controls.patch_size.value() == 64 and again.config.patch_size == 64


def test_window_adapts_switches_weights_and_rerefines_only_unreviewed(qtbot, tiny_dataset, monkeypatch, tmp_path):
    """End to end: review, adapt (tiny budget; the guard forced to keep), weights switch and are remembered,
    unreviewed instances re-refined on request, accepted and edited work unchanged, back to the default."""
    from bpr_studio.gui.main_window import MainWindow

    monkeypatch.setattr(core_adapt, "beats", lambda after, before: True)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.open_dataset(tiny_dataset / "annotations.json", predictions=tiny_dataset / "predictions.json")
    session = window.session
    assert window.adapt.weights_label.text() == "weights: default"
    with qtbot.waitSignal(window.refineFinished, timeout=120000):
        window.refine_dataset()
    for i in range(3):
        session.accept(i, 0)
        assert session.paint(i, 1, np.array([[210.0, 80.0], [275.0, 80.0]]), 4.0)
    session.reject(1, 2)
    reviewed = [(i, j) for i in range(3) for j in range(2)] + [(1, 2)]
    finals = {(i, j): session.images[i].instances[j].final.copy() for i, j in reviewed}

    window.adapt.minutes = TINY
    window.adapt.options = {"threads": 1, "slice_seconds": 0.05}
    with qtbot.waitSignal(window.adapt.adaptFinished, timeout=180000) as done:
        assert window.adapt.start()
        assert window.adapt.progress_bar.isVisible()
    result = done.args[0]
    assert result is not None, window.last_error
    expected = session.store.path.with_name(session.store.path.stem + ".adapted.pt")
    assert result.kept and result.out == expected and expected.is_file()
    assert result.train_instances + result.holdout_instances == 6
    assert window.adapt.weights_label.text() == f"weights: {expected.name}"
    assert session.weights == str(expected)
    assert "Refine unreviewed" in window.adapt.last_message
    qtbot.waitUntil(lambda: window.adapt._thread is None)

    refined = []
    window.instanceRefined.connect(lambda i, j: refined.append((i, j)))
    with qtbot.waitSignal(window.refineFinished, timeout=120000):
        window.actions["refine_unreviewed"].trigger()
    assert window.refinement.refiner.weights_path == expected
    assert sorted(refined) == [(0, 2), (2, 2)]
    for (i, j), mask in finals.items():
        inst = session.images[i].instances[j]
        assert inst.status != "unreviewed" and np.array_equal(inst.final, mask)

    window.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.open_dataset(tiny_dataset / "annotations.json", predictions=tiny_dataset / "predictions.json")
    assert again.adapt.weights_label.text() == f"weights: {expected.name}"
    again.actions["default_weights"].trigger()
    assert again.adapt.weights_label.text() == "weights: default" and again.session.weights is None
    again.actions["precise_weights"].trigger()
    assert again.adapt.weights_label.text() == "weights: bpr_lite0_128.pt"
    assert again.session.weights == "precise"  # by name: found again after the package moves
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not weights")
    assert not again.adapt.choose_weights(bad)  # said, naming the file; the weights in use stay
    assert "broken.pt: not a BPR Studio weights file" in again.last_error
    assert again.adapt.weights_label.text() == "weights: bpr_lite0_128.pt"
    assert again.adapt.choose_weights(expected) and again.session.weights == str(expected)
    from PyQt5 import QtWidgets

    from bpr_studio.core.config import weights_path
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName", lambda *a, **k: (str(weights_path("fast")), ""))
    again.actions["weights_file"].trigger()  # Refine > Use weights file...
    assert again.adapt.weights_label.text() == "weights: bpr_lite0_64.pt"
    again.actions["precise_weights"].trigger()
    again.close()
    third = MainWindow()  # reopened: the session's "precise" is the shipped file
    qtbot.addWidget(third)
    assert third.open_dataset(tiny_dataset / "annotations.json", predictions=tiny_dataset / "predictions.json")
    assert third.adapt.weights_label.text() == "weights: bpr_lite0_128.pt"
    assert third.refinement.factory.weights == weights_path("precise")
    third.close()


def test_window_cancels_an_adaptation(qtbot, tiny_dataset):
    from bpr_studio.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_dataset(tiny_dataset / "annotations.json", predictions=tiny_dataset / "predictions.json")
    session = window.session
    for i in range(3):
        for j in range(3):
            session.paint(i, j, np.array([[60.0, 60.0]]), 3.0)
    window.adapt.minutes = 5.0
    window.adapt.options = {"threads": 1, "slice_seconds": 0.05}
    with qtbot.waitSignal(window.adapt.adaptFinished, timeout=120000) as done:
        window.adapt.start()
        window.adapt.cancel()
    assert done.args[0].cancelled and window.adapt.weights_label.text() == "weights: default"
    assert not (session.store.path.with_name(session.store.path.stem + ".adapted.pt")).exists()
    window.close()
