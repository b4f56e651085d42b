"""Bad devices, weights files and output locations give one line naming what is wrong, before any work (issue 11)."""

import pickle

import pytest
import torch

from bpr_studio.cli import main
from bpr_studio.core import refiner
from bpr_studio.core.model import WeightsError, load_weights
from bpr_studio.core.refiner import DeviceError, available_devices, pick_device
from bpr_studio.io.formats import load_dataset, save_dataset


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine with a CPU only, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(refiner, "_mps_available", lambda: False)


@pytest.fixture(scope="module")
def gt_results(mini_dataset, tmp_path_factory):
    """(annotations, images folder, results file of the ground truth as predictions) of the mini dataset."""
    annotations = mini_dataset / "data_dataset_coco" / "annotations.json"
    dataset = load_dataset(annotations)
    for record in dataset.images:
        for inst in record.instances:
            inst.score = 0.9
    results = tmp_path_factory.mktemp("gt") / "results.json"
    save_dataset(dataset, results, "coco", results=True)
    return annotations, mini_dataset / "data_dataset_coco", results


def test_a_missing_device_is_one_line_naming_what_there_is(no_gpu):
    assert available_devices() == ["CPU"]
    assert pick_device("auto") == torch.device("cpu") and pick_device("CPU") == torch.device("cpu")
    for device, message in [("cuda", "CUDA is not available on this machine (found: CPU)"),
                            ("cuda:1", "CUDA is not available on this machine (found: CPU)"),
                            ("mps", "MPS is not available on this machine (found: CPU)"),
                            ("gpu", "unknown device 'gpu'; expected auto, cpu, cuda, cuda:N or mps")]:
        with pytest.raises(DeviceError) as info:
            pick_device(device)
        assert str(info.value) == message


def test_cli_device_error_is_one_line(no_gpu, gt_results, tmp_path, capsys):
    annotations, images, results = gt_results
    code = main(["inspect", "--images", str(images), "--annotations", str(annotations),
                 "--predictions", str(results), "--out", str(tmp_path / "report"), "--device", "cuda"])
    assert code == 2
    assert capsys.readouterr().err == "bpr-studio inspect: error: CUDA is not available on this machine (found: CPU)\n"
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("content", [b"", b"hello\n", bytes(range(256)) * 20, "module"])
def test_garbage_weights_are_not_bpr_weights_and_no_unsafe_advice(tmp_path, content):
    path = tmp_path / "w.pt"
    if content == "module":  # a whole pickled module: PyTorch would advise weights_only=False
        torch.save(torch.nn.Linear(2, 2), path)
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        load_weights(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a BPR Studio weights file (PyTorch cannot read it as plain tensors")
    assert "weights_only" not in message and "\n" not in message and info.value.__cause__ is None


def test_cli_garbage_weights_is_one_line(gt_results, tmp_path, capsys):
    annotations, images, results = gt_results
    (tmp_path / "w.pt").write_bytes(pickle.dumps({"not": "weights"}, protocol=2))
    assert main(["inspect", "--images", str(images), "--annotations", str(annotations), "--predictions", str(results),
                 "--out", str(tmp_path / "report"), "--weights", str(tmp_path / "w.pt"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bpr-studio inspect: error: {tmp_path / 'w.pt'}: not a BPR Studio weights file")
    assert err.count("\n") == 1 and "weights_only" not in err


def test_outputs_are_checked_before_any_input_is_read(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    missing = str(tmp_path / "missing.json")  # would fail on reading, so the output check came first
    cases = [
        (["eval", "--annotations", missing, "--predictions", missing, "--json", str(tmp_path)],
         f"{tmp_path}: is a folder; expected the path of a file to write"),
        (["inspect", "--images", str(tmp_path), "--annotations", missing, "--predictions", missing,
          "--out", str(tmp_path / "file")], f"{tmp_path / 'file'}: is a file; expected a folder to write into"),
        (["train", "--annotations", missing, "--predictions", missing, "--out", str(tmp_path)],
         f"{tmp_path}: is a folder; expected the path of a file to write"),
        (["train", "--annotations", missing, "--predictions", missing, "--out", str(tmp_path / "file" / "w.pt")],
         f"{tmp_path / 'file' / 'w.pt'}: cannot create folder {tmp_path / 'file'}, "
         f"because {tmp_path / 'file'} is a file"),
        (["train", "--annotations", missing, "--predictions", missing, "--out", str(tmp_path / "w.pt"),
          "--save-patches", str(tmp_path)], f"{tmp_path}: is a folder; expected the path of a file to write"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        assert capsys.readouterr().err == f"bpr-studio {args[0]}: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
