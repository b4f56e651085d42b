"""Quantisation-aware fine-tuning: ONNX Runtime's int8 graph emulated in PyTorch.

The fast CPU path (:mod:`bpr_studio.core.inference`) runs a static int8 graph made by ONNX Runtime's
quantiser (QDQ): every tensor an operator reads is rounded to uint8 with one scale and zero point
per tensor, from the min/max the float network reaches on the calibration inputs; convolution
weights are rounded to int8, symmetric, one scale per output channel, after the BatchNorm that
follows them is folded in; a ReLU or ReLU6 after a convolution is folded into the rounding of its
output. That rounding moves the fg - bg logit near the boundary by about 0.28 (sd) against float32
on photographs (docs/engine_bench.md), so the two paths' masks differ.

:class:`Int8Emulation` runs a float network with the same rounding (``torch.fake_quantize_*``,
gradients straight through), found by intercepting the torch functions of its forward pass
(:class:`torch.overrides.TorchFunctionMode`): the inputs of every convolution, addition,
multiplication, concatenation, resize and unfolded BatchNorm are rounded, each distinct tensor once,
and each convolution's weight (and the scale of a BatchNorm no convolution absorbs: the lite0 stem's,
which follows the sum of the image and mask convolutions) is rounded as the int8 graph holds it.
Compared tensor by tensor with the QDQ graph run without ONNX Runtime's fusions, every layer agrees
given the same inputs; near the boundary the emulated logits depart from float32 the way ONNX Runtime's
int8 logits do (correlation 0.88 on coco_mval photographs, docs/engine_bench.md). A training run can then fit
weights whose int8 graph stays close to a float teacher (``TrainConfig.int8_share``). The int32 biases
and ONNX Runtime's integer arithmetic inside an operator are not modelled.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# torch functions whose tensor inputs ONNX Runtime reads as uint8 (activations: ReLU / ReLU6 are
# folded into the rounding of the tensor they produce, so their own inputs are not rounded)
_QUANTISED = {"conv2d", "add", "__add__", "__radd__", "mul", "__mul__", "__rmul__", "cat", "interpolate",
              "batch_norm"}


class Int8Emulation:
    """Call with x (B, C, S, S) float32 -> the logits (B, K, S, S) ``model`` gives with int8 rounding.

    model: a refinement network with Conv2d (and BatchNorm2d) layers, used as it is: calling the
        model itself still runs it in float32. Its BatchNorm layers must be in eval mode: their
        running statistics are what the int8 graph folds into the convolutions.
    weight_bits: 8, or 7 on CPUs without VNNI (:func:`bpr_studio.core.inference.int8_weight_bits`).

    :meth:`calibrate` with representative inputs comes first, and again when the weights have moved:
    the ranges are the float network's, as ONNX Runtime's calibration takes them.
    """

    def __init__(self, model: nn.Module, weight_bits: int = 8):
        self.model = model
        self.weight_bits = weight_bits
        self.weight_qmax = 127 if weight_bits == 8 else 64  # onnxruntime's symmetric / reduced int8 ranges
        self.ranges: list[tuple[float, float]] = []  # per rounded tensor, in order of use: float min, max
        self._folds: dict[int, nn.BatchNorm2d | None] | None = None  # id(conv weight) -> BatchNorm it feeds

    def calibrate(self, inputs: torch.Tensor, batch_size: int = 16) -> None:
        """Set the ranges to the float network's min/max over ``inputs`` (N, C, S, S); the first
        call also finds which BatchNorm each convolution feeds (one forward pass)."""
        if self._folds is None:
            self._folds = _batchnorms_fed(self.model, inputs[:1])
        mode = _Rounding(self, observe=True)
        with torch.no_grad():
            for s in range(0, len(inputs), batch_size):
                mode.start_pass()
                with mode:
                    out = self.model(inputs[s:s + batch_size])
                mode._site(out)  # the output's range: the int8 graph's output is a uint8 tensor too
        self.ranges = mode.observed

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.ranges:
            raise RuntimeError("Int8Emulation: calibrate() before the first call")
        mode = _Rounding(self)
        with mode:
            out = self.model(x)
        return mode._site(out)

    def round_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """A conv weight (Cout, Cin / groups, k, k) as the int8 graph holds it: times the scale of
        the BatchNorm it feeds (if any), rounded per output channel, divided back."""
        bn = self._folds.get(id(weight))
        fold = torch.ones(weight.shape[0], device=weight.device, dtype=weight.dtype)
        if bn is not None:  # a constant here: the gradient reaches the weight straight through the rounding
            fold = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
            fold = torch.where(fold.abs() > 1e-12, fold, torch.ones_like(fold))
        fold = fold.view(-1, 1, 1, 1)
        folded = weight * fold
        scale = (folded.detach().abs().flatten(1).amax(1) / self.weight_qmax).clamp(min=1e-12)
        zero = torch.zeros(len(scale), dtype=torch.int32, device=weight.device)
        return torch.fake_quantize_per_channel_affine(folded, scale.float(), zero, 0, -self.weight_qmax,
                                                      self.weight_qmax) / fold

    def round_scale(self, scale: torch.Tensor) -> torch.Tensor:
        """The per-channel scale (C,) of a BatchNorm left in the int8 graph: int8, symmetric, one
        scale for the whole vector (as onnxruntime's quantiser rounds it)."""
        step = (scale.detach().abs().max() / self.weight_qmax).clamp(min=1e-12)
        return torch.fake_quantize_per_tensor_affine(scale, float(step), 0, -self.weight_qmax, self.weight_qmax)


def _round_activation(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """x rounded to uint8 over [min(lo, 0), max(hi, 0)] as onnxruntime's quantiser sets scale and zero point."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zero = int(min(max(round(-lo / scale), 0), 255))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class _Rounding(TorchFunctionMode):
    """Rounds the inputs of the quantised torch functions of one forward pass (or, with ``observe``,
    records their float ranges instead). A tensor read by several operators is one site, rounded once."""

    def __init__(self, emulation: Int8Emulation, observe: bool = False):
        super().__init__()
        self.emulation, self.observe = emulation, observe
        self.observed: list[tuple[float, float]] = []
        self.start_pass()

    def start_pass(self) -> None:
        """Forget the tensors of the last forward pass; sites count from 0 again."""
        self.rounded: dict[int, torch.Tensor] = {}  # id(tensor) -> its rounded self
        self.conv_outputs: set[int] = set()  # ids of conv outputs: a BatchNorm reading one is folded
        self.alive: list[torch.Tensor] = []  # the tensors behind those ids: no id is reused in a pass
        self.next_site = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name not in _QUANTISED or (name == "batch_norm" and id(args[0]) in self.conv_outputs):
            return func(*args, **kwargs)
        if name == "cat":
            args = ([self._site(t) for t in args[0]],) + tuple(args[1:])
        elif name == "conv2d":
            weight = args[1] if len(args) > 1 else kwargs.pop("weight")
            rounded = weight if self.observe else self.emulation.round_weight(weight)
            args = (self._site(args[0]), rounded) + tuple(args[2:])
        elif name == "batch_norm":  # one that no convolution absorbs: its scale is an int8 weight too
            weight = args[3] if len(args) > 3 else kwargs.pop("weight")
            rounded = weight if self.observe or weight is None else self.emulation.round_scale(weight)
            args = (self._site(args[0]), args[1], args[2], rounded) + tuple(args[4:])
        elif name == "interpolate":
            args = (self._site(args[0]),) + tuple(args[1:])
        else:  # add, mul: every tensor operand (constants too, as the quantiser rounds them)
            args = tuple(self._site(a) if isinstance(a, torch.Tensor) else a for a in args)
        out = func(*args, **kwargs)
        if name == "conv2d":
            self.conv_outputs.add(id(out))
            self.alive.append(out)
        return out

    def _site(self, x: torch.Tensor) -> torch.Tensor:
        if id(x) in self.rounded:
            return self.rounded[id(x)]
        site, self.next_site = self.next_site, self.next_site + 1
        if self.observe:
            lo, hi = float(x.min()), float(x.max())
            if site < len(self.observed):
                old = self.observed[site]
                self.observed[site] = (min(lo, old[0]), max(hi, old[1]))
            else:
                self.observed.append((lo, hi))
            rounded = x
        else:
            rounded = _round_activation(x, *self.emulation.ranges[site])
        self.rounded[id(x)] = rounded
        self.alive.append(x)
        return rounded


def _batchnorms_fed(model: nn.Module, example: torch.Tensor) -> dict[int, nn.BatchNorm2d | None]:
    """id(conv weight) -> the BatchNorm2d that reads that conv's output directly (None: none does),
    found by one forward pass of ``example``."""
    produced: dict[int, nn.Conv2d] = {}  # id of a conv's output tensor -> that conv
    folds: dict[int, nn.BatchNorm2d | None] = {}
    outputs = []  # kept alive during the pass, so no id is reused

    def conv_out(conv, args, out):
        produced[id(out)] = conv
        outputs.append(out)
        folds.setdefault(id(conv.weight), None)

    def bn_in(bn, args):
        conv = produced.get(id(args[0]))
        if conv is not None:
            folds[id(conv.weight)] = bn

    hooks = [m.register_forward_hook(conv_out) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(bn_in) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return folds

