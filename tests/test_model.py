"""Tests of the refinement network: shapes, size, weight files, mask input and fast inference."""

import pytest
import torch

from bpr_studio.core import model as model_module
from bpr_studio.core.model import ARCHS, WeightsError, build_model, fast_inference, load_weights, save_weights


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


@pytest.fixture(scope="module")
def decisive_model() -> torch.nn.Module:
    """hr18s after a few SGD steps towards 'foreground = mask channel', so its logits are far from ties."""
    torch.manual_seed(1)
    model = build_model("hr18s")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(8):
        x = _toy_batch(2, 32)
        loss = torch.nn.functional.cross_entropy(model(x), (x[:, 3] > 0).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _toy_batch(n: int, size: int) -> torch.Tensor:
    """(n, 4, size, size): random image, mask channel -1/+1 of a random half-plane."""
    x = torch.randn(n, 4, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        a, b = torch.randn(2)
        x[i, 3] = torch.where(a * (xx - size / 2) + b * (yy - size / 2) > 0, 1.0, -1.0)
    return x


def test_onnxruntime_mode_agrees_with_eager(decisive_model):
    pytest.importorskip("onnxruntime")
    run = fast_inference(decisive_model, "cpu")
    assert run.mode == "onnxruntime"
    size = 50  # branches at 13 and 7 pixels: the upsampling is not an exact doubling
    x = _toy_batch(3, size)
    with torch.no_grad():
        eager = decisive_model(x)
    with torch.inference_mode():  # the export (first call) must work inside inference mode too
        fast = run(x)
    assert run.mode == "onnxruntime"
    assert fast.shape == (3, 2, size, size) and fast.dtype == torch.float32
    assert torch.allclose(torch.softmax(fast, 1), torch.softmax(eager, 1), atol=1e-4)
    assert (fast.argmax(1) != eager.argmax(1)).float().mean() < 1e-3
    assert torch.allclose(run(x[:1]), fast[:1], atol=1e-4)  # another batch size, same graph


def test_fast_inference_copies_the_weights(decisive_model):
    run = fast_inference(decisive_model, "cpu", mode="eager")
    x = _toy_batch(1, 32)
    before = run(x)
    changed = build_model("hr18s").eval()
    changed.load_state_dict(decisive_model.state_dict())
    run_changed = fast_inference(changed, "cpu", mode="eager")
    with torch.no_grad():
        changed.classifier.bias += 5.0
    assert torch.equal(run_changed(x), before)


def test_channels_last_without_onnxruntime(decisive_model, monkeypatch):
    monkeypatch.setattr(model_module, "_has_onnxruntime", lambda: False)
    run = fast_inference(decisive_model, "cpu")
    assert run.mode == "channels_last"
    x = _toy_batch(2, 32)
    out = run(x)
    assert out.is_contiguous()
    with torch.no_grad():
        assert torch.allclose(torch.softmax(out, 1), torch.softmax(decisive_model(x), 1), atol=1e-4)


def test_eager_mode_is_the_model(decisive_model):
    run = fast_inference(decisive_model, "cpu", mode="eager")
    x = _toy_batch(2, 32)
    with torch.no_grad():
        assert torch.equal(run(x), decisive_model(x))


def test_falls_back_to_pytorch_when_export_fails(decisive_model, monkeypatch):
    pytest.importorskip("onnxruntime")

    def broken_export(*args, **kwargs):
        raise RuntimeError("exporter broken")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    run = fast_inference(decisive_model, "cpu")
    x = _toy_batch(2, 32)
    out = run(x)
    assert run.mode == "channels_last"
    with torch.no_grad():
        assert torch.allclose(torch.softmax(out, 1), torch.softmax(decisive_model(x), 1), atol=1e-4)


def test_unavailable_mode_is_rejected(hr18s):
    with pytest.raises(ValueError, match="autocast-fp16"):
        fast_inference(hr18s, "cpu", mode="autocast-fp16")
