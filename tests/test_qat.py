"""Int8-aware fine-tuning: the emulation of ONNX Runtime's int8 graph, and training runs that use it."""

import numpy as np
import pytest
import torch

from bpr_studio.core.model import build_model, load_weights, save_weights
from bpr_studio.core.qat import Int8Emulation
from bpr_studio.core.train import TrainConfig, train

from test_train import sure_background_teacher, tiny_patches


def lite0(seed=0):
    """A random lite0 refiner in eval mode whose BatchNorm layers have statistics of their own, so
    folding them into the convolutions matters."""
    torch.manual_seed(seed)
    net = build_model("lite0")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return net.eval()


def inputs(n=8, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, size, size, generator=g)
    x[:, 3] = torch.where(x[:, 3] > 0, 1.0, -1.0)  # the mask channel is -1 / +1
    return x


def test_the_model_itself_stays_float_and_the_emulation_rounds():
    net, x = lite0(), inputs()
    keys = list(net.state_dict())
    with torch.no_grad():
        plain = net(x)
        emulation = Int8Emulation(net)
        with pytest.raises(RuntimeError, match="calibrate"):
            emulation(x)
        emulation.calibrate(x)
        rounded = emulation(x)
        again = emulation(x)
        after = net(x)
    torch.testing.assert_close(after, plain, rtol=0, atol=0)
    torch.testing.assert_close(again, rounded, rtol=0, atol=0)
    assert list(net.state_dict()) == keys  # nothing installed in the model: checkpoints save it as it is
    assert 0 < (rounded - plain).abs().max() < 0.1 * plain.abs().max()  # rounded, not broken


def test_every_tensor_an_operator_reads_is_rounded_once_on_its_uint8_grid():
    net, x = lite0(), inputs()
    emulation = Int8Emulation(net)
    emulation.calibrate(x)
    # sites: the inputs of convolutions, additions, multiplications, concatenations, resizes and the
    # stem's BatchNorm (it follows the sum of the image and mask convolutions: not folded), and the output
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert convs < len(emulation.ranges) < 3 * convs
    lo, hi = emulation.ranges[-1]
    with torch.no_grad():
        out = emulation(x)
    scale = (max(hi, 0) - min(lo, 0)) / 255
    steps = out / scale  # values are scale * (q - zero point), q and the zero point integers
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-2)


def test_weights_are_rounded_per_channel_after_folding_the_batchnorm_they_feed():
    net, x = lite0(), inputs()
    emulation = Int8Emulation(net, weight_bits=8)
    emulation.calibrate(x)
    block = net.blocks[1]
    bn = block._bn1
    fold = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().view(-1, 1, 1, 1)
    folded = emulation.round_weight(block._depthwise_conv.weight).detach() * fold  # as the int8 graph holds it
    steps = folded / (folded.abs().flatten(1).amax(1).view(-1, 1, 1, 1) / 127)
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-3)
    # the stem's BatchNorm follows the sum of the image and mask convolutions: folded into neither
    stem = emulation.round_weight(net.conv_stem.weight).detach()
    steps = stem / (stem.abs().flatten(1).amax(1).view(-1, 1, 1, 1) / 127)
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-3)
    seven = Int8Emulation(net, weight_bits=7)  # CPUs without VNNI: reduced range
    seven.calibrate(x)
    w = seven.round_weight(net.classifier.weight).detach()
    steps = w / (w.abs().flatten(1).amax(1).view(-1, 1, 1, 1) / 64)
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-3)


def test_emulation_predicts_where_onnxruntime_int8_departs_from_float():
    """On the shipped weights, near the boundary (|fg - bg logit| < 1), the emulated rounding moves the
    logit the way the real int8 graph does (correlation 0.69 on held-out synthetic crops, 0.66 on
    coco_mval photographs, docs/engine_bench.md); the two roundings are not identical."""
    pytest.importorskip("onnxruntime")
    from bpr_studio.core.config import weights_path
    from bpr_studio.core.inference import calibration_crops, calibration_inputs, fast_inference, int8_weight_bits
    from bpr_studio.core.patches import network_inputs

    torch.set_num_threads(1)
    net = load_weights(weights_path("fast"))[0]
    calibration = calibration_inputs(64)
    x = network_inputs(*calibration_crops(count=32, seed=1), 64)  # held out from the calibration crops
    int8 = fast_inference(net, "cpu", "onnxruntime-int8", input_size=64, calibration=lambda size: calibration,
                          cache=None, threads=1)
    with torch.no_grad():
        reference = int8(x)
        plain = net(x)
        emulation = Int8Emulation(net, int8_weight_bits())
        emulation.calibrate(calibration)
        emulated = emulation(x)
    assert int8.mode == "onnxruntime-int8"
    z = [logits[:, 1] - logits[:, 0] for logits in (plain, reference, emulated)]
    near = z[0].abs() < 1
    departs = torch.stack([(z[1] - z[0])[near], (z[2] - z[0])[near]])
    assert near.sum() > 1000
    assert torch.corrcoef(departs)[0, 1] > 0.5


def int8_aware_run(tmp_path, share):
    """(start weights file that forbids int8, as the precise model's did, 8 patches, a 3-step config
    of share ``share`` whose teacher calls every pixel background): a run that must move the weights."""
    torch.set_num_threads(1)
    start = save_weights(tmp_path / "start.pt", lite0(), "lite0",
                         meta={"train": {"input_size": 32}, "int8": False, "int8_why": "lost quality"})
    teacher = sure_background_teacher(tmp_path / "teacher.pt", input_size=32)
    config = TrainConfig(model="lite0", input_size=32, iters=3, batch_size=4, val_patches=0, lr=1e-3,
                         teacher=str(teacher), distill=1.0, int8_share=share)
    return start, tiny_patches(2).subset(np.arange(8)), config


def test_int8_aware_run_keeps_batchnorm_statistics_and_writes_plain_weights(tmp_path):
    start, ps, config = int8_aware_run(tmp_path, 0.5)
    lines = []
    losses = train(ps, tmp_path / "q.pt", config, init=start, progress=False, log=lines.append)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert any("int8-aware" in line for line in lines)
    before, after = load_weights(start)[0].state_dict(), load_weights(tmp_path / "q.pt")[0].state_dict()
    assert set(after) == set(before)  # loads strictly into the architecture: no emulation in the file
    for name in before:
        if "running" in name:  # frozen: the statistics the int8 graph folds
            torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert any(not torch.equal(after[n], before[n]) for n in before if n.endswith("conv.weight"))
    more = train(ps, tmp_path / "q.pt", TrainConfig(**{**config.__dict__, "iters": 5}),
                 resume=tmp_path / "q.pt.ckpt", progress=False)
    assert len(more) == 2 and load_weights(tmp_path / "q.pt")[1]["meta"]["iteration"] == 5


def test_int8_share_1_trains_the_int8_graphs_weights_and_keeps_the_float_ones(tmp_path):
    from bpr_studio.core.train import TrainInputError

    start, ps, config = int8_aware_run(tmp_path, 1.0)
    with pytest.raises(TrainInputError, match="int8_share 1.*init"):
        train(ps, tmp_path / "q.pt", config, progress=False)
    train(ps, tmp_path / "q.pt", config, init=start, progress=False)
    before = load_weights(start)[0].state_dict()
    model, info = load_weights(tmp_path / "q.pt")
    for name, value in model.state_dict().items():  # the float network is the one started from
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    trained = info["int8_state"]
    assert set(trained) == set(before)
    assert any(not torch.equal(trained[n], before[n]) for n in before if n.endswith("conv.weight"))
    more = train(ps, tmp_path / "q.pt", TrainConfig(**{**config.__dict__, "iters": 5}),
                 resume=tmp_path / "q.pt.ckpt", progress=False)
    model, info = load_weights(tmp_path / "q.pt")
    assert len(more) == 2 and info["meta"]["int8_state"]["iteration"] == 5
    assert info["meta"]["train"] == {"input_size": 32}  # the file started from describes the float weights
    assert info["int8"] and "int8_why" not in info["meta"]  # its own int8 weights lift the start's veto
    assert info["meta"]["int8_state"]["train"]["int8_weight_bits"] in (7, 8)
    torch.testing.assert_close(model.state_dict()["classifier.bias"], before["classifier.bias"], rtol=0, atol=0)
    train(ps, tmp_path / "r.pt", TrainConfig(**{**config.__dict__, "int8_share": 0.5}), init=start, progress=False)
    with pytest.raises(TrainInputError, match="int8_share"):  # a checkpoint that trained the float network too
        train(ps, tmp_path / "r.pt", config, resume=tmp_path / "r.pt.ckpt", progress=False)
