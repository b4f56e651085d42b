"""Test settings shared by every test: headless Qt, one torch thread, the sample data (tests/data and shared)."""

import gc
import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch
from PyQt5 import QtCore

torch.set_num_threads(1)

# tests/data/mini_dataset: three drawn images with labelme and COCO annotations, written by
# tests/data/make_mini_dataset.py (tests/data/README.md)
TEST_DATA = Path(__file__).resolve().parent / "data"
# BPR_SHARED_DATA: the shared data of a checkout that is not beside shared/ (a git worktree)
SHARED_DATA = Path(os.environ.get("BPR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def mini_dataset() -> Path:
    """Three drawn images (500x340, 500x375, 500x375) with annotations of known geometry, written by
    tests/data/make_mini_dataset.py (its IMAGES table gives every shape): data_annotated/ (labelme
    JSON beside each JPEG; 14 instances, 2 of them __ignore__, the sofa two polygons of one
    group_id) and data_dataset_coco/ (the same as labelme's converter writes it: 12 instances,
    __ignore__ left out, images in JPEGImages/). Read-only: copy it to change it."""
    return TEST_DATA / "mini_dataset"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (or $BPR_SHARED_DATA); the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared sample data, not found at {SHARED_DATA} (set BPR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def voc_dir(shared_data) -> Path:
    """The labelme VOC sample with its photographs (PASCAL VOC): data_annotated/ (labelme JSON) and
    data_dataset_coco/ (COCO). Only for tests that need the photographs; the others use ``mini_dataset``."""
    path = shared_data / "labelme_voc"
    if not path.is_dir():
        pytest.skip(f"needs the shared labelme VOC sample, not found at {path}")
    return path


@pytest.fixture
def labelme_copy(mini_dataset, tmp_path):
    """A writable copy of mini_dataset/data_annotated (the session file is written beside it)."""
    target = tmp_path / "labelme"
    shutil.copytree(mini_dataset / "data_annotated", target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


@pytest.fixture(autouse=True)
def _delete_windows_at_test_end(request):
    """The widgets a GUI test made are deleted when it ends (pytest-qt closes them and posts their
    deletion), not at some garbage collection later: a window deleted while its refinement thread
    still runs aborts the program, and this is where a test would show it."""
    yield
    if "qtbot" in request.fixturenames:
        QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.DeferredDelete)
        gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Exported ONNX graphs go to a temporary folder, never to the user's cache."""
    os.environ["BPR_STUDIO_CACHE"] = str(tmp_path_factory.mktemp("model-cache"))
