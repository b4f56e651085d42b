"""BPR Studio: polish instance-segmentation masks with Boundary Patch Refinement."""

from pathlib import Path

__version__ = "0.1.0"

RESOURCES = Path(__file__).resolve().parent / "resources"
