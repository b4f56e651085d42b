"""RefinerConfig: the knobs of boundary patch refinement, shared by every layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass


# the refinement networks a weights file may name (core.model.MODELS builds them; listed here so the
# command line can offer them without importing torch)
MODEL_NAMES = ("hr18s", "hr18", "hr48", "lite0")


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
    model: architecture name (one of MODEL_NAMES); the Refiner takes it from the weights file.
    """

    patch_size: int = 64
    padding: int = 0
    input_size: int | None = None
    nms_thr: float = 0.25
    batch_size: int = 32
    min_size: int = 96
    model: str = "hr18s"

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

    def to_dict(self) -> dict:
        return asdict(self)
