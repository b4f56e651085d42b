"""Test settings shared by every test: headless Qt, one torch thread, paths to shared data."""

import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

torch.set_num_threads(1)

# BPR_SHARED_DATA: the shared data of a checkout that is not beside shared/ (a git worktree)
SHARED_DATA = Path(os.environ.get("BPR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def voc_dir() -> Path:
    """The labelme VOC sample: data_annotated/ (labelme JSON) and data_dataset_coco/ (COCO)."""
    path = SHARED_DATA / "labelme_voc"
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path}")
    return path


@pytest.fixture
def voc_copy(voc_dir, tmp_path):
    """A writable copy of the labelme VOC sample (the session file is written beside it)."""
    target = tmp_path / "voc"
    shutil.copytree(voc_dir / "data_annotated", target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Exported ONNX graphs go to a temporary folder, never to the user's cache."""
    os.environ["BPR_STUDIO_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
