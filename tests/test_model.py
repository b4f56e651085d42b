"""Tests of the refinement network: shapes, size, weight files and mask input."""

import numpy as np
import pytest
import torch

from bpr_studio.core.config import MODELS, RefinerConfig
from bpr_studio.core.model import ARCHS, WeightsError, build_model, load_weights, save_weights, trained_patch_size
from bpr_studio.core.patches import IMAGENET_MEAN, IMAGENET_STD
from bpr_studio.core.refiner import Refiner


@pytest.fixture(scope="module")
def hr18s() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("hr18s").eval()


@pytest.mark.parametrize("size", [32, 64, 100])
def test_output_is_two_logits_at_input_resolution(hr18s, size):
    with torch.no_grad():
        out = hr18s(torch.randn(2, 4, size, size))
    assert out.shape == (2, 2, size, size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_hr18s_has_about_3_9_million_parameters(hr18s):
    count = sum(p.numel() for p in hr18s.parameters())
    assert abs(count - 3.9e6) / 3.9e6 < 0.03, count


def test_larger_variants_are_larger():
    with torch.device("meta"):  # shapes only
        counts = {name: sum(p.numel() for p in build_model(name).parameters()) for name in ARCHS}
    assert counts["hr18s"] < counts["hr18"] < counts["hr48"]
    assert 9e6 < counts["hr18"] < 11e6
    assert 60e6 < counts["hr48"] < 70e6


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="hr99"):
        build_model("hr99")


def test_mask_channel_changes_the_output(hr18s):
    x = torch.randn(1, 4, 64, 64)
    x[:, 3] = -1.0
    flipped = x.clone()
    flipped[:, 3, :, 32:] = 1.0
    with torch.no_grad():
        diff = (hr18s(x) - hr18s(flipped)).abs().max()
    assert diff > 1e-3
    assert hr18s.conv1_mask.weight.shape == (64, 1, 3, 3)


def test_save_load_round_trip(tmp_path, hr18s):
    # non-trivial BN statistics so the round trip covers running_mean/var
    model = build_model("hr18s")
    model.load_state_dict(hr18s.state_dict())
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 4, 64, 64) * 2 + 0.5)
    model.eval()
    path = save_weights(tmp_path / "w" / "model.pt", model, "hr18s", meta={"epochs": 3, "note": "x"})
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left
    loaded, info = load_weights(path)
    assert info["arch"] == "hr18s" and info["meta"] == {"epochs": 3, "note": "x"}
    assert not loaded.training
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.allclose(torch.softmax(a, 1), torch.softmax(b, 1), atol=2e-2)
    full = save_weights(tmp_path / "full.pt", model, "hr18s", half=False)
    with torch.no_grad():
        assert torch.allclose(load_weights(full)[0](x), a, atol=1e-5)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="not found") as err:
        load_weights(tmp_path / "nope.pt")
    assert "nope.pt" in str(err.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsError, match="bad.pt.*cannot read"):
        load_weights(path)


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(WeightsError, match="other.pt.*not a BPR Studio weights file"):
        load_weights(path)


def test_other_architecture_than_expected(tmp_path):
    path = save_weights(tmp_path / "big.pt", build_model("hr18"), "hr18")
    with pytest.raises(WeightsError, match="holds hr18 weights, expected hr18s"):
        load_weights(path, arch="hr18s")
    assert load_weights(path)[1]["arch"] == "hr18"


def test_state_dict_of_another_architecture(tmp_path):
    path = save_weights(tmp_path / "mislabelled.pt", build_model("hr18"), "hr18s")
    with pytest.raises(WeightsError, match="file says hr18s but the tensors are those of hr18"):
        load_weights(path)


def test_damaged_state_dict(tmp_path, hr18s):
    path = tmp_path / "cut.pt"
    save_weights(path, hr18s, "hr18s")
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["classifier.weight"]
    torch.save(payload, path)
    with pytest.raises(WeightsError, match="fit no known architecture.*missing: classifier.weight"):
        load_weights(path)



def test_weights_carry_input_size_and_normalisation(tmp_path, hr18s):
    plain = save_weights(tmp_path / "plain.pt", hr18s, "hr18s", meta={"train": {"input_size": 96, "patch_size": 32}})
    _, info = load_weights(plain)
    assert info["input_size"] == 96 and info["patch_size"] == 32 == trained_patch_size(plain)
    assert info["input_norm"] == {"mean": pytest.approx(IMAGENET_MEAN), "std": pytest.approx(IMAGENET_STD)}
    _, info = load_weights(save_weights(tmp_path / "own.pt", hr18s, "hr18s", input_norm={"mean": [0, 0, 0],
                                                                                         "std": [255, 255, 255]}))
    assert info["input_size"] == MODELS["hr18s"].input_size  # the metadata does not say: the family's
    assert info["patch_size"] is None
    assert info["input_norm"] == {"mean": (0.0, 0.0, 0.0), "std": (255.0, 255.0, 255.0)}


def test_refiner_normalises_as_the_weights_say(tmp_path, hr18s):
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    masks = np.zeros((1, 48, 48), bool)
    masks[0, 12:36, 10:30] = True
    config = RefinerConfig(patch_size=16, input_size=16, min_size=0)
    probs = []
    for name, norm in (("imagenet", None), ("unit", {"mean": [0, 0, 0], "std": [255, 255, 255]})):
        path = save_weights(tmp_path / f"{name}.pt", hr18s, "hr18s", input_norm=norm)
        probs.append(Refiner(config, weights=path, device="cpu", fast=False).refine(image, masks)[0].probs)
    assert probs[0].shape == probs[1].shape
    assert not np.allclose(probs[0], probs[1])  # the image channels differ, so does the output


def test_bad_normalisation_is_refused(tmp_path, hr18s):
    path = save_weights(tmp_path / "w.pt", hr18s, "hr18s")
    payload = torch.load(path, weights_only=True)
    payload["input_norm"] = {"mean": [1, 2], "std": [1, 1, 0]}
    torch.save(payload, path)
    with pytest.raises(WeightsError, match="input_norm"):
        load_weights(path)


def test_int8_state_round_trips_and_must_fit_the_network(tmp_path, hr18s):
    other = build_model("hr18s")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.01)
    path = save_weights(tmp_path / "w.pt", hr18s, "hr18s", int8_state=other.state_dict())
    loaded, info = load_weights(path)
    assert set(info["int8_state"]) == set(hr18s.state_dict())
    name = "conv1.weight"
    torch.testing.assert_close(info["int8_state"][name], other.state_dict()[name], atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(loaded.state_dict()[name], hr18s.state_dict()[name], atol=2e-3, rtol=2e-3)
    assert load_weights(save_weights(tmp_path / "plain.pt", hr18s, "hr18s"))[1]["int8_state"] is None
    lite = build_model("lite0").state_dict()
    save_weights(tmp_path / "bad.pt", hr18s, "hr18s", int8_state=lite)
    with pytest.raises(WeightsError, match="bad.pt.*int8_state_dict.*hr18s"):
        load_weights(tmp_path / "bad.pt")
