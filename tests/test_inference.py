"""Tests of fast inference: ONNX Runtime (float32, int8) against eager PyTorch, fallbacks, the disk cache."""

import logging

import numpy as np
import pytest
import torch
from torch import nn

from bpr_studio.core import inference
from bpr_studio.core.inference import FastInference, fast_inference, read_cache_entry, weights_digest
from bpr_studio.core.model import build_model


@pytest.fixture(scope="module")
def hr18s() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("hr18s").eval()


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


def _agrees_with_eager(run, model: torch.nn.Module, size: int) -> torch.Tensor:
    """``run``'s output on a toy batch of two, checked to give the model's class probabilities (to 1e-4)."""
    x = _toy_batch(2, size)
    out = run(x)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(out, 1), torch.softmax(model(x), 1), atol=1e-4)
    return out


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
    monkeypatch.setattr(inference, "has_onnxruntime", lambda: False)
    run = fast_inference(decisive_model, "cpu")
    assert run.mode == "channels_last"
    assert _agrees_with_eager(run, decisive_model, 32).is_contiguous()


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
    _agrees_with_eager(run, decisive_model, 32)
    assert run.mode == "channels_last"


def test_unavailable_mode_is_rejected(hr18s):
    with pytest.raises(ValueError, match="autocast-fp16"):
        fast_inference(hr18s, "cpu", mode="autocast-fp16")


def test_missing_onnxruntime_is_said_once(decisive_model, monkeypatch, caplog):
    monkeypatch.setattr(inference, "has_onnxruntime", lambda: False)
    monkeypatch.setattr(inference, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="bpr_studio.core.inference"):
        fast_inference(decisive_model, "cpu")
        fast_inference(decisive_model, "cpu")
    assert [r.getMessage() for r in caplog.records if "onnxruntime is not installed" in r.getMessage()] == [
        caplog.records[0].getMessage()]


class TinyNet(nn.Module):
    """Any network will do: conv-BN-ReLU twice and a 1x1 classifier, (B, 4, S, S) -> (B, 2, S, S)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 2, 1))

    def forward(self, x):
        return self.body(x)


@pytest.fixture()
def tiny() -> nn.Module:
    torch.manual_seed(3)
    model = TinyNet()
    with torch.no_grad():  # lean towards "foreground = mask channel" so the argmax is decisive
        model.body[6].bias.zero_()
        model.body[0].weight[:, 3] += 0.5
        model.body[6].weight[1] += 0.3
        model.body[6].weight[0] -= 0.3
    return model.eval()


def _calibration(size: int) -> np.ndarray:
    return _toy_batch(24, size).numpy()


def _onnx_entries(folder):
    return sorted((folder / "onnx").glob("*.onnx"))


def _no_export(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("exported although the cache holds the graph")

    monkeypatch.setattr(torch.onnx, "export", fail)


def test_cache_miss_exports_and_writes_an_entry(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    run = FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path).prepare()
    assert run.mode == "onnxruntime" and run.build_seconds[(16, 16)][0] == "export"
    (entry,) = _onnx_entries(tmp_path)
    assert entry == run.cache_path((16, 16))
    assert read_cache_entry(entry) is not None
    assert not list((tmp_path / "onnx").glob(".*.tmp"))  # the atomic write left no temporary file


def test_cache_hit_needs_no_export(tiny, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    x = _toy_batch(3, 16)
    first = FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path)(x)
    _no_export(monkeypatch)
    second = FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path)  # a new start
    out = second(x)
    assert second.mode == "onnxruntime" and second.build_seconds[(16, 16)][0] == "cache"
    assert torch.equal(out, first)


def test_cache_key_follows_weights_size_and_mode(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    base = FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path)
    changed = TinyNet()
    changed.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        changed.body[6].bias += 1.0
    assert weights_digest(changed) != weights_digest(tiny)
    other = FastInference(changed.eval(), 16, mode="onnxruntime", cache=tmp_path)
    int8 = FastInference(tiny, 16, mode="onnxruntime-int8", calibration=_calibration, cache=tmp_path)
    recalibrated = FastInference(tiny, 16, mode="onnxruntime-int8", calibration=_calibration, cache=tmp_path,
                                 calibration_key="p32+0")
    paths = {base.cache_path((16, 16)), base.cache_path((24, 24)), other.cache_path((16, 16)),
             int8.cache_path((16, 16)), recalibrated.cache_path((16, 16))}
    assert len(paths) == 5


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_entry_is_rebuilt(tiny, tmp_path, damage, caplog):
    pytest.importorskip("onnxruntime")
    x = _toy_batch(3, 16)
    good = FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path)(x)
    (entry,) = _onnx_entries(tmp_path)
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[:len(data) // 2])
    elif damage == "flip":
        entry.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    else:
        entry.write_bytes(b"not a model at all")
    with caplog.at_level(logging.WARNING, logger="bpr_studio.core.inference"):
        run = FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path)
        out = run(x)
    assert run.mode == "onnxruntime" and run.build_seconds[(16, 16)][0] == "export"
    assert torch.equal(out, good)
    assert "damaged" in caplog.text
    assert read_cache_entry(entry) is not None  # rewritten whole


def test_unwritable_cache_still_refines(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder should be")
    run = FastInference(tiny, 16, mode="onnxruntime", cache=blocked)
    _agrees_with_eager(run, tiny, 16)
    assert run.mode == "onnxruntime"


def test_int8_agrees_with_eager_and_is_cached(tiny, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime.quantization")
    x = _toy_batch(4, 16)
    run = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path)
    assert run.mode == "onnxruntime-int8"  # auto picks int8 when calibration inputs are given
    out = run(x)
    assert run.mode == "onnxruntime-int8" and run.build_seconds[(16, 16)][0] == "export+int8"
    with torch.no_grad():
        eager = tiny(x)
    assert (out.argmax(1) == eager.argmax(1)).float().mean() > 0.98
    _no_export(monkeypatch)
    again = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path)
    assert torch.equal(again(x), out) and again.build_seconds[(16, 16)][0] == "cache"


@pytest.mark.parametrize("vnni, reduce_range", [(True, False), (False, True)])
def test_int8_weights_have_8_bits_only_on_cpus_with_vnni(tiny, tmp_path, monkeypatch, vnni, reduce_range):
    """Without VNNI the quantiser keeps weights to 7 bits (reduce_range); the bits are part of the cache
    key, so a cache folder shared by two machines never hands one the other's graph."""
    pytest.importorskip("onnxruntime.quantization")
    import onnxruntime.quantization

    calls = []
    real = onnxruntime.quantization.quantize_static
    monkeypatch.setattr(onnxruntime.quantization, "quantize_static",
                        lambda *args, **kwargs: calls.append(kwargs["reduce_range"]) or real(*args, **kwargs))
    monkeypatch.setattr(inference, "cpu_has_vnni", lambda: vnni)
    run = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path).prepare()
    assert run.mode == "onnxruntime-int8" and calls == [reduce_range]
    assert f"-w{8 if vnni else 7}-" in run.cache_path((16, 16)).name
    monkeypatch.setattr(inference, "cpu_has_vnni", lambda: not vnni)
    assert run.cache_path((16, 16)) not in _onnx_entries(tmp_path)


@pytest.mark.parametrize("batch", [0, 1, 2, 5])
@pytest.mark.parametrize("threads", [2, 3])
def test_threads_split_the_batch_over_two_sessions_without_changing_it(tiny, tmp_path, batch, threads):
    """threads > 1: two sessions sharing the threads, each on a part of the batch (3 + 2 of 5; an empty
    batch or one of one on one session); the logits are those of one session over the whole batch."""
    pytest.importorskip("onnxruntime.quantization")
    x = _toy_batch(batch, 16)
    one = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path, threads=1)
    split = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path, threads=threads)
    assert split.mode == one.mode == "onnxruntime-int8"
    assert torch.equal(split(x), one(x))
    assert len(split._sessions[(16, 16)]) == 2 and len(one._sessions[(16, 16)]) == 1


def test_int8_failure_falls_back_to_float32(tiny, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime.quantization")
    import onnxruntime.quantization

    def broken(*args, **kwargs):
        raise RuntimeError("quantiser broken")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", broken)
    run = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path)
    _agrees_with_eager(run, tiny, 16)
    assert run.mode == "onnxruntime"


def test_int8_needs_calibration(tiny):
    with pytest.raises(ValueError, match="calibration"):
        FastInference(tiny, 16, mode="onnxruntime-int8")


def test_exported_lite0_graph_has_constant_paddings_folded_into_its_convolutions():
    """TF-"SAME" stride-2 convolutions export as Pad + Conv; the exported graph keeps no Pad and no
    shape arithmetic nor the paddings' constants (ONNX Runtime warned about each unused one at every
    start), and computes what eager PyTorch does."""
    pytest.importorskip("onnxruntime")
    import onnx

    torch.manual_seed(0)
    model = build_model("lite0").eval()
    fast = FastInference(model, 64, mode="onnxruntime", cache=False)
    graph = onnx.load_from_string(fast._export((64, 64))).graph
    ops = {node.op_type for node in graph.node}
    assert "Pad" not in ops and "Shape" not in ops
    read = {name for node in graph.node for name in node.input}
    assert [t.name for t in graph.initializer if t.name not in read] == []
    x = torch.randn(3, 4, 64, 64)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-4)


def test_int8_graph_is_made_from_the_int8_state_when_there_is_one(tiny, tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    x = _toy_batch(4, 16)
    background = {k: v.clone() for k, v in tiny.state_dict().items()}
    background["body.6.bias"] = torch.tensor([20.0, -20.0])  # its int8 graph calls every pixel background
    own = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path)
    other = FastInference(tiny, 16, calibration=_calibration, cache=tmp_path, int8_state=background)
    assert other.mode == "onnxruntime-int8"
    assert other.cache_path((16, 16)) != own.cache_path((16, 16))
    assert (other(x).argmax(1) == 0).all() and (own(x).argmax(1) == 1).any()
    fp32 = FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path, int8_state=background)
    with torch.no_grad():  # every other mode runs the model's own weights
        torch.testing.assert_close(fp32(x), tiny(x), atol=1e-4, rtol=1e-4)
    assert fp32.cache_path((16, 16)) == FastInference(tiny, 16, mode="onnxruntime", cache=tmp_path).cache_path((16, 16))
