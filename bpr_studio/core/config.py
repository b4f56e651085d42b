"""The knobs of refinement (RefinerConfig) and of training (TrainConfig), and the registry of networks
(MODELS), shared by every layer without importing torch."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import RESOURCES


@dataclass(frozen=True)
class ModelSpec:
    """A refinement network the program knows: a one-line description for help texts and the network
    input side (pixels) it is trained at unless told otherwise. core.model builds it."""

    description: str
    input_size: int


# the registry of networks a weights file may name, read by the command line, the window and the tests
# without importing torch; core.model.build_model builds each
MODELS: dict[str, ModelSpec] = {
    "hr18s": ModelSpec("HRNetV2-W18-Small, the paper's model (random init)", 128),
    "hr18": ModelSpec("HRNetV2-W18 (random init)", 128),
    "hr48": ModelSpec("HRNetV2-W48 (random init)", 256),
    "lite0": ModelSpec("EfficientNet-Lite0 encoder (ImageNet-pretrained, the train extra) + U-Net decoder", 64),
}
DEFAULT_MODEL = "lite0"  # the family of the shipped default weights and of `bpr-studio train`
# the shipped weights files (in bpr_studio/resources/weights/, docs/training.md) by the names --weights
# also takes: the default (EfficientNet-Lite0 at input 64), the same family at input 128 (more exact on
# real photographs and on pixel-accurate masks, 6-7x the CPU time), and the paper's HRNetV2-W18-Small
SHIPPED_WEIGHTS = {"fast": "bpr_lite0_64.pt", "precise": "bpr_lite0_128.pt", "paper": "bpr_hr18s_128.pt"}
DEFAULT_WEIGHTS = SHIPPED_WEIGHTS["fast"]
PAPER_WEIGHTS = SHIPPED_WEIGHTS["paper"]


def weights_path(name_or_path: str | os.PathLike) -> Path:
    """A weights file named by the user: one of SHIPPED_WEIGHTS' names ("fast", "precise", "paper") is
    that shipped file; anything else is a path, returned as given."""
    shipped = SHIPPED_WEIGHTS.get(str(name_or_path))
    return RESOURCES / "weights" / shipped if shipped else Path(name_or_path)


def weights_name(path: str | os.PathLike) -> str:
    """How to record a weights file so that :func:`weights_path` finds it again after the package moves
    (a new install, another virtual environment): a shipped file by its name, any other by its path."""
    path = Path(path)
    for name, file in SHIPPED_WEIGHTS.items():
        if path.name == file and path.resolve().parent == (RESOURCES / "weights").resolve():
            return name
    return str(path)


@dataclass(frozen=True)
class RefinerConfig:
    """How patches are sampled and fed to the network.

    patch_size: side of a boundary patch in image pixels.
    padding: extra context around each patch in image pixels (seen by the network, not written back).
    input_size: side of the square network input in pixels (patch + padding is resized to it);
        None = the size the weights were trained at (read from the weights file by the Refiner).
    nms_thr: IoU threshold of the patch NMS (higher keeps more, more overlapping patches).
    batch_size: patches per network forward pass.
    min_size: instances whose coarse mask's bounding box is shorter than this on its longer side (in
        pixels) keep their coarse mask: no patches. At that size a Mask R-CNN 28x28 mask is already
        at about image resolution, and the shipped model made most such instances worse on held-out
        data (docs/training.md). 0 refines every instance.
    model: architecture name (a key of MODELS); the Refiner takes it from the weights file.
    attached_only: keep only the changes connected to the coarse mask's boundary; islands and holes
        the network opens away from it are undone (core.patches.undo_detached_changes).
    margin: a pixel leaves its coarse value only where the refined foreground probability (averaged
        over the patches that cover it) passes 0.5 by more than this, in [0, 0.5): 0 thresholds at
        0.5; higher keeps the coarse value where the network is unsure (fewer instances made worse,
        smaller corrections; README "How much it helps today").
    mirror: also run the network on every patch mirrored left-right and average the two logits
        (test-time augmentation; on by default): boundary F up 0.1-0.6 points on every row of the
        evaluation sets and no more instances made worse, for twice the network's time (1.6-1.7x
        the CPU fast path's time per image; README "How much it helps today"). False halves the
        network's time.
    max_shift: the boundary moves by at most this many pixels: a pixel farther than that from the
        coarse mask's boundary (Euclidean, to the nearest pixel of the other value) keeps its coarse
        value; 0 = no limit. For coarse masks known to be close (old annotations): it stops the
        network from moving a boundary to a stronger edge further away, and undoes the corrections
        of masks that are off by more (README "Refining within a few pixels").
    snap: radius in pixels of the colour guided filter that moves each patch's refined probability
        onto the edges of its image crop before reassembly (core.edges); 0 = off; 2, the default,
        raises boundary F on ground truth drawn to the pixel (grabcut50: +0.3 to +1.0 points) and
        lowers it by 0.2-1.1 against polygon annotations, which run a pixel or two off the edges
        (README "Snapping to the image's edges").
    """

    patch_size: int = 64
    padding: int = 0
    input_size: int | None = None
    nms_thr: float = 0.25
    batch_size: int = 32
    min_size: int = 96
    model: str = DEFAULT_MODEL
    attached_only: bool = True
    margin: float = 0.05
    mirror: bool = True
    max_shift: int = 0
    snap: int = 2

    def __post_init__(self) -> None:
        if self.patch_size < 2:
            raise ValueError(f"patch_size must be >= 2 pixels, got {self.patch_size}")
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0 pixels, got {self.padding}")
        if self.input_size is not None and self.input_size < 8:
            raise ValueError(f"input_size must be >= 8 pixels, got {self.input_size}")
        if not 0.0 < self.nms_thr <= 1.0:
            raise ValueError(f"nms_thr must be in (0, 1], got {self.nms_thr}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0 pixels, got {self.min_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 pixels (0: no limit), got {self.max_shift}")
        if self.snap < 0:
            raise ValueError(f"snap must be >= 0 pixels (0: off), got {self.snap}")

    def to_dict(self) -> dict:
        return asdict(self)

    def changed(self) -> str:
        """The fields that differ from the defaults, as "name value, ..." (e.g. "margin 0.1, max_shift
        3"); "" when none do. For a run's log line."""
        default = RefinerConfig()
        return ", ".join(f"{name} {value}" for name, value in asdict(self).items() if getattr(default, name) != value)


@dataclass
class TrainConfig:
    """Knobs of a training run.

    model: architecture name (a key of MODELS). input_size: network input side (patches are
    resized to it); None = the family's (MODELS[model].input_size).
    iters: planned iterations. max_seconds: time budget (None = none); the run stops at whichever
    comes first and the poly schedule follows the larger progress. batch_size: patches per step.
    lr, momentum, weight_decay, power, min_lr: SGD and poly schedule. threads: torch CPU threads
    (0 = torch's default). checkpoint_seconds: interval between checkpoints. val_patches: patches
    held out to measure validation IoU at each checkpoint. seed: data order, augmentation, init.
    boundary_weight: loss weight of the pixels along exact (band 0) target boundaries (1 = plain
    cross-entropy). mask_jitter: share of the coarse mask patches dilated or eroded in augmentation
    (core.train.augment; 0 = none), by 1 to mask_jitter_px px. device: where the network trains
    ("cpu", "cuda", "cuda:1", ...). workers: processes that build batches ahead of the network
    (0 = in the training process), for a GPU that one CPU core cannot keep busy. bf16: the forward
    pass and the loss under bfloat16 autocast (weights, gradients and optimizer stay float32; for a
    GPU: a CPU without native bfloat16 runs it many times slower). teacher: a weights file whose
    network's probabilities the run also learns from (distillation, core.train.distillation_loss;
    any family and input size); distill: that term's share of the loss, the rest being the
    cross-entropy against the targets (0: the teacher is not run). int8_share: the share of the
    loss taken from a pass with the int8 graph's rounding emulated (core.qat; 0 = no such pass, 1 =
    that pass alone), BatchNorm statistics frozen; for a short fine-tuning from trained weights.
    """

    model: str = DEFAULT_MODEL
    input_size: int | None = None
    iters: int = 4000
    max_seconds: float | None = None
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    min_lr: float = 1e-4
    threads: int = 0
    checkpoint_seconds: float = 300.0
    val_patches: int = 256
    seed: int = 0
    boundary_weight: float = 1.0
    mask_jitter: float = 0.0
    mask_jitter_px: int = 1
    device: str = "cpu"
    workers: int = 0
    bf16: bool = False
    teacher: str | None = None
    distill: float = 0.5
    int8_share: float = 0.0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown architecture {self.model!r}; expected one of {', '.join(MODELS)}")
        if self.input_size is None:
            self.input_size = MODELS[self.model].input_size
        if not self.boundary_weight > 0:
            raise ValueError(f"boundary_weight must be > 0 (1 = plain cross-entropy), got {self.boundary_weight}")
        if not 0.0 <= self.mask_jitter <= 1.0:
            raise ValueError(f"mask_jitter must be a share in [0, 1], got {self.mask_jitter}")
        if self.mask_jitter_px < 1:
            raise ValueError(f"mask_jitter_px must be at least 1 px, got {self.mask_jitter_px}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = batches built in the training process), got {self.workers}")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be a share in [0, 1], got {self.distill}")
        if not 0.0 <= self.int8_share <= 1.0:
            raise ValueError(f"int8_share must be a share in [0, 1], got {self.int8_share}")
