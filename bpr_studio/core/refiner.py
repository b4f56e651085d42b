"""The Refiner: boundary patches of every instance -> network in batches -> reassembled masks."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import RESOURCES
from .boundary import mask_bbox
from .config import DEFAULT_WEIGHTS, RefinerConfig
from .edges import snap_to_edges
from .inference import calibration_inputs, fast_inference
from .model import load_weights
from .patches import (boundary_patches, crop_boxes, foreground_probability, network_inputs, patch_probabilities,
                      reassemble)

_log = logging.getLogger(__name__)
_warned_sizes: set[tuple[Path, int]] = set()  # (weights file, patch size) pairs already warned about


class RefineCancelled(Exception):
    """Raised by Refiner.refine when its should_stop callback asks it to stop."""


@dataclass
class RefinedInstance:
    """The refinement of one instance.

    index: position of the instance in the input stack. mask: (H, W) bool refined mask.
    boxes: (K, 4) int32 patch boxes (x0, y0, x1, y1) in image pixels.
    probs: (K, P, P) float32 foreground probability of each patch at patch resolution.
    """

    index: int
    mask: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray


def default_weights_path() -> Path:
    """The default shipped with the package, config.DEFAULT_WEIGHTS (the EfficientNet-Lite0 refiner at
    input 64, docs/training.md; the others of config.SHIPPED_WEIGHTS lie beside it)."""
    return RESOURCES / "weights" / DEFAULT_WEIGHTS


class DeviceError(ValueError):
    """The device asked for does not exist on this machine; the message says which ones do."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_devices() -> list[str]:
    """The devices of this machine as users name them, fastest first: 'CUDA' (or 'CUDA x2'), 'MPS', 'CPU'."""
    found = []
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        found.append("CUDA" if n == 1 else f"CUDA x{n}")
    if _mps_available():
        found.append("MPS")
    return found + ["CPU"]


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA if available, else Apple MPS, else CPU; 'cpu', 'cuda', 'cuda:N', 'mps' as asked.

    Raises DeviceError with one line for the user, e.g. "CUDA is not available on this machine
    (found: CPU)", when the device asked for is not there or is not a device name.
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        chosen = torch.device(device.lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {str(device)!r}; expected auto, cpu, cuda, cuda:N or mps") from None
    found = ", ".join(available_devices())
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"CUDA is not available on this machine (found: {found})")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise DeviceError(f"{chosen} is not available on this machine (found: {found})")
    if chosen.type == "mps" and not _mps_available():
        raise DeviceError(f"MPS is not available on this machine (found: {found})")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {str(device)!r} is not supported; expected auto, cpu, cuda, cuda:N or mps")
    return chosen


def patch_boxes(mask: np.ndarray, config: RefinerConfig, origin: tuple[int, int] = (0, 0),
                shape: tuple[int, int] | None = None) -> np.ndarray:
    """Boxes (K, 4) int32 (x0, y0, x1, y1) the Refiner refines for one (H, W) bool mask: its boundary
    patches, or none when the mask is empty or its bounding box is shorter than ``config.min_size``
    on its longer side. origin, shape: the mask given as a window of its image (see
    ``boundary_patches``): the same boxes, for the cost of the window."""
    box = mask_bbox(mask)
    if box is None or max(box[2] - box[0], box[3] - box[1]) < config.min_size:
        return np.zeros((0, 4), np.int32)
    return boundary_patches(mask, config.patch_size, config.nms_thr, bbox=box, origin=origin, shape=shape)


class Refiner:
    """Refines instance masks of an image with a trained BPR network.

    config: patch sampling and batching (RefinerConfig); its ``model`` is taken from the weights, and
        an ``input_size`` of None becomes the size the weights were trained at (the family's default
        for files that do not say); images are normalised as the weights file says.
    weights: path of a weights file (core.model.save_weights); None = the shipped default.
    device: "auto", "cpu", "cuda", "cuda:1", "mps", ...
    fast: use core.inference.fast_inference (on CPU: ONNX Runtime int8 calibrated on synthetic
        boundary patches, cached on disk; masks within the quality of plain mode, 3-6x faster; float32
        ONNX Runtime for weights whose file forbids int8, see core.model.load_weights) instead of
        plain eager PyTorch.
    """

    def __init__(self, config: RefinerConfig | None = None, weights: str | Path | None = None,
                 device: str | torch.device = "auto", fast: bool = True):
        self.device = pick_device(device)
        self.weights_path = Path(weights) if weights is not None else default_weights_path()
        self.model, info = load_weights(self.weights_path, device=self.device)
        self._norm = info["input_norm"]
        config = config or RefinerConfig()
        self.config = dataclasses.replace(config, model=info["arch"], input_size=config.input_size or info["input_size"])
        trained = info["patch_size"]
        if trained not in (None, config.patch_size) and (self.weights_path, config.patch_size) not in _warned_sizes:
            _warned_sizes.add((self.weights_path, config.patch_size))
            _log.warning("%s was trained on %d-px patches; refining with %d-px ones (--patch-size %d, or Patch "
                         "size in the window, matches its training)", self.weights_path, trained, config.patch_size,
                         trained)
        calibration = self._calibration_inputs if info["int8"] else None  # None: no int8 graph
        calibrated_on = f"p{self.config.patch_size}+{self.config.padding}"  # what the calibration crops are
        self._forward = fast_inference(self.model, self.device, input_size=self.config.input_size,
                                       calibration=calibration, calibration_key=calibrated_on,
                                       int8_state=info["int8_state"]) if fast else self.model

    def _calibration_inputs(self, input_size: int) -> torch.Tensor:
        """(64, 4, input_size, input_size) float32 network inputs for int8 calibration."""
        return calibration_inputs(input_size, self.config.patch_size, self.config.padding, **self._norm)

    @property
    def device_name(self) -> str:
        """'CUDA', 'MPS' or 'CPU', for the status bar."""
        return {"cuda": "CUDA", "mps": "MPS"}.get(self.device.type, self.device.type.upper())

    def patches(self, mask: np.ndarray) -> np.ndarray:
        """Boxes (K, 4) int32 that refine() would use for one (H, W) bool mask (see patch_boxes)."""
        return patch_boxes(mask, self.config)

    def refine(self, image: np.ndarray, masks: np.ndarray,
               on_instance: Callable[[RefinedInstance], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               on_batch: Callable[[int, int], None] | None = None,
               boxes: list[np.ndarray] | None = None) -> list[RefinedInstance]:
        """Refine every mask of one image.

        image: (H, W, 3) uint8 RGB. masks: (N, H, W) bool coarse masks. boxes: the N patch boxes
        ``patches(mask)`` gives, when a caller has already computed them (a pipeline that extracts
        patches of the next image while the network runs); None computes them here.
        Patches of all instances go through the network in batches of config.batch_size;
        ``on_instance`` gets each instance as soon as its last patch is done; ``should_stop`` is
        polled before every batch and RefineCancelled is raised when it returns True;
        ``on_batch(done_patches, total_patches)`` is called once the patches are sampled (done 0)
        and after every batch.
        Returns the N RefinedInstance in input order.
        """
        image, masks = _checked_inputs(image, masks)
        cfg = self.config
        if boxes is None:
            boxes = [self.patches(m) for m in masks]
        elif len(boxes) != len(masks):
            raise ValueError(f"got {len(boxes)} box arrays for {len(masks)} masks")
        counts = np.array([len(b) for b in boxes], np.int64)
        all_boxes = np.concatenate(boxes) if len(boxes) else np.zeros((0, 4), np.int32)
        image_crops = crop_boxes(image, all_boxes, cfg.padding)
        side = cfg.patch_size + 2 * cfg.padding
        mask_crops = np.concatenate([np.zeros((0, side, side), bool)] +
                                    [crop_boxes(m, b, cfg.padding) for m, b in zip(masks, boxes) if len(b)])
        probs = np.empty((len(all_boxes), cfg.patch_size, cfg.patch_size), np.float32)

        results: list[RefinedInstance | None] = [None] * len(masks)
        ends = np.cumsum(counts)
        next_instance = 0

        def finish_ready(done: int) -> None:
            nonlocal next_instance
            while next_instance < len(masks) and ends[next_instance] <= done:
                i = next_instance
                start = ends[i] - counts[i]
                mask = reassemble(masks[i], boxes[i], probs[start:ends[i]], attached_only=cfg.attached_only,
                                  margin=cfg.margin, max_shift=cfg.max_shift)
                refined = RefinedInstance(i, mask, boxes[i], probs[start:ends[i]].copy())
                results[i] = refined
                if on_instance is not None:
                    on_instance(refined)
                next_instance += 1

        finish_ready(0)  # instances without patches (empty masks)
        if on_batch is not None:
            on_batch(0, len(all_boxes))
        for start in range(0, len(all_boxes), cfg.batch_size):
            if should_stop is not None and should_stop():
                raise RefineCancelled(f"refinement stopped after {next_instance} of {len(masks)} instances")
            stop = min(start + cfg.batch_size, len(all_boxes))
            probs[start:stop] = self._patch_probabilities(image_crops[start:stop], mask_crops[start:stop])
            finish_ready(stop)
            if on_batch is not None:
                on_batch(stop, len(all_boxes))
        return results

    def _patch_probabilities(self, image_crops: np.ndarray, mask_crops: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 and (B, S, S) bool crops -> (B, P, P) float32 foreground probability."""
        cfg = self.config
        x = network_inputs(image_crops, mask_crops, cfg.input_size, **self._norm)
        if cfg.mirror:
            x = with_mirrors(x)
        with torch.inference_mode():
            logits = self._forward(x.to(self.device))
        if cfg.mirror:
            logits = mean_of_mirrors(logits)
        probs = foreground_probability(logits)
        if cfg.snap:  # at crop resolution, padding included, then cut like the others
            probs = snap_to_edges(image_crops, patch_probabilities(probs, image_crops.shape[1]), cfg.snap)
        return patch_probabilities(probs, cfg.patch_size, cfg.padding)


def with_mirrors(x: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) -> (2B, C, S, S): the batch, then each of its inputs mirrored left-right. On the
    CPU with NumPy (no torch operation between ONNX Runtime calls: see ``network_inputs``)."""
    if x.device.type == "cpu":
        a = x.numpy()
        return torch.from_numpy(np.concatenate([a, a[..., ::-1]]))
    return torch.cat([x, x.flip(-1)])


def mean_of_mirrors(logits: torch.Tensor) -> torch.Tensor:
    """(2B, K, S, S) logits of a :func:`with_mirrors` batch -> (B, K, S, S): each input's logits
    averaged with those of its mirror image, mirrored back."""
    b = len(logits) // 2
    if logits.device.type == "cpu":
        z = logits.numpy()
        return torch.from_numpy((z[:b] + z[b:, ..., ::-1]) * np.float32(0.5))
    return (logits[:b] + logits[b:].flip(-1)) * 0.5


def _checked_inputs(image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    masks = np.asarray(masks)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks must be (N, H, W) with (H, W) = {image.shape[:2]} of the image, got {masks.shape}")
    return np.ascontiguousarray(image), masks.astype(bool, copy=False)
