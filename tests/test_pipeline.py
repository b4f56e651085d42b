"""Dataset refinement engines on the demo data: identical files from serial, pipelined and Ray runs,
resume after an interruption at any point, failures reported by image, bounded read-ahead."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from bpr_studio import RESOURCES
from bpr_studio.core.config import RefinerConfig
from bpr_studio.core.model import build_model, save_weights
from bpr_studio.pipeline import local, refine as pipeline_refine
from bpr_studio.pipeline.job import read_job
from bpr_studio.pipeline.refine import fingerprint, refine_dataset
from bpr_studio.pipeline.shards import ShardStore, differences
from bpr_studio.pipeline.work import RefinerSettings

DEMO = RESOURCES / "demo"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """A small random network in eager PyTorch (quick to load: any masks will do for comparing
    engines; bench/bench_dataset.py compares them in the default ONNX Runtime mode)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    save_weights(path, build_model("hr18s"), "hr18s")
    return RefinerSettings(RefinerConfig(patch_size=32, input_size=32, batch_size=16, min_size=0), str(path), "cpu",
                           fast=False)


@pytest.fixture(scope="module")
def job():
    return read_job(DEMO, DEMO / "predictions.json", DEMO / "annotations.json")


def run(job, settings, out, **kwargs):
    prints = fingerprint(DEMO, DEMO / "predictions.json", DEMO / "annotations.json", settings)
    return refine_dataset(job, out, settings, fingerprint=prints, **kwargs)


@pytest.fixture(scope="module")
def serial_file(job, settings, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "refined.json"
    summary = run(job, settings, out, engine="serial")
    assert summary.out_written and not summary.failed and summary.refined == 3 and summary.patches > 0
    return out.read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_pipelined_writes_the_serial_file(job, settings, serial_file, tmp_path, workers):
    out = tmp_path / "refined.json"
    run(job, settings, out, engine="pipelined", workers=workers)
    assert out.read_bytes() == serial_file
    assert [p.name for p in tmp_path.iterdir()] == ["refined.json"]  # shards removed


def test_ray_writes_the_serial_file(job, settings, serial_file, tmp_path):
    ray = pytest.importorskip("ray")
    from bpr_studio.pipeline.ray_engine import init_local_ray

    init_local_ray(num_cpus=2, log_to_driver=False)
    try:
        out = tmp_path / "refined.json"
        summary = run(job, settings, out, engine="ray", workers=2)
        assert not summary.failed
        assert out.read_bytes() == serial_file
        # an actor that cannot build its refiner: one line naming the cause, not Ray's tracebacks
        bad = dataclasses.replace(settings, device="xpu")
        with pytest.raises(ValueError, match=r"^a Ray actor died: DeviceError: device 'xpu' is not supported"):
            run(job, bad, tmp_path / "bad.json", engine="ray", workers=1)
        assert not (tmp_path / "bad.json").exists()
    finally:
        ray.shutdown()


def test_a_ray_actor_refines_a_block_of_images_like_serial(job, settings):
    """The actor's call without Ray: a block of every image, pipelined, one result row each."""
    from bpr_studio.pipeline.ray_engine import RayRefiner

    batch = {"task": np.array([json.dumps(dataclasses.asdict(t)) for t in job.tasks], dtype=object)}
    rows = [json.loads(b["result"][0]) for b in RayRefiner(settings)(batch)]
    serial = [r.to_dict() for r in local.run_serial(job.tasks, settings.build())]
    assert sorted(rows, key=lambda r: r["index"]) == serial


@pytest.mark.parametrize("found, expected", [("same", True), ("other", False), ("", False), (OSError, False)])
def test_local_ray_workers_get_the_package_path_only_when_they_need_it(monkeypatch, tmp_path, found, expected):
    """A runtime_env costs Ray its prestarted workers: set only when a fresh interpreter would not
    import this package (another bpr_studio, none, or the check failed)."""
    ray = pytest.importorskip("ray")
    import subprocess
    from pathlib import Path

    from bpr_studio.pipeline import ray_engine

    origin = {"same": str(Path(ray_engine.__file__).parents[1] / "__init__.py"),
              "other": str(tmp_path / "bpr_studio" / "__init__.py"), "": ""}.get(found)

    def fake_run(*args, **kwargs):
        if found is OSError:
            raise OSError("no interpreter")
        return subprocess.CompletedProcess(args, 0, stdout=origin + "\n", stderr="")

    monkeypatch.setattr(ray_engine.subprocess, "run", fake_run)
    assert ray_engine.workers_import_this_package() is expected
    calls = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    ray_engine.init_local_ray(num_cpus=2)
    env = calls[0].get("runtime_env")
    assert (env is None) is expected
    if env is not None:
        assert env["env_vars"]["PYTHONPATH"].split(os.pathsep)[0] == ray_engine.package_root()


def test_ray_blocks_hold_a_few_images():
    from bpr_studio.pipeline.ray_engine import block_size

    assert block_size(3, 2) == 1
    assert block_size(50, 2) == 7  # 8 blocks: 4 an actor
    assert block_size(100_000, 8) == 16


class Interrupt(BaseException):
    pass


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_interrupted_run_resumes_to_the_same_file(job, settings, serial_file, tmp_path, monkeypatch, k):
    """Stopped after k finished images (k = 3: every image done, killed before the merge)."""
    out = tmp_path / "refined.json"
    seen = []

    def stop_after_k(result):
        seen.append(result)
        if len(seen) == k:
            raise Interrupt

    def stop_at_start(todo):
        if k == 0:
            raise Interrupt

    if k == 3:
        monkeypatch.setattr(pipeline_refine, "atomic_write_json", lambda *a: (_ for _ in ()).throw(Interrupt()))
    with pytest.raises(Interrupt):
        run(job, settings, out, engine="pipelined", on_start=stop_at_start, on_result=stop_after_k)
    monkeypatch.undo()
    assert not out.exists()
    parts = tmp_path / ".refined.json.parts"
    assert len(ShardStore(out, {}).load()) == k
    (sorted(parts.glob("part-*.jsonl"))[-1]).open("a").write('{"index": 2, "rles": [{"si')  # a line cut off
    summary = run(job, settings, out, engine="pipelined", resume=True)
    assert summary.resumed == k and summary.refined == 3
    assert out.read_bytes() == serial_file
    assert not parts.exists()


def test_resume_with_other_settings_is_refused(job, settings, tmp_path):
    out = tmp_path / "refined.json"
    with pytest.raises(Interrupt):
        run(job, settings, out, engine="serial", on_result=lambda r: (_ for _ in ()).throw(Interrupt()))
    other = dataclasses.replace(settings, config=dataclasses.replace(settings.config, nms_thr=0.5))
    with pytest.raises(ValueError, match=r"other inputs or settings \(config: nms_thr 0.25, now 0.5\)"):
        run(job, other, out, engine="serial", resume=True)
    summary = run(job, other, out, engine="serial")  # without --resume: start over
    assert summary.discarded == 1 and summary.resumed == 0 and summary.refined == 3


def test_differences_name_the_settings_and_inputs_that_changed():
    before = {"images": "/data", "predictions": "ab12", "config": {"mirror": False, "margin": 0.05}}
    now = {"images": "/data", "predictions": "cd34", "config": {"mirror": True, "margin": 0.05}}
    assert differences(before, now) == "config: mirror False, now True; predictions"
    assert differences(None, now) == "no record of them"


def test_an_interrupt_in_a_refiner_thread_ends_the_run(job, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(local, "refine_loaded", lambda *a: (_ for _ in ()).throw(Interrupt()))
    with pytest.raises(Interrupt):
        run(job, settings, tmp_path / "refined.json", engine="pipelined", workers=2)
    assert not (tmp_path / "refined.json").exists()


def test_worker_exception_is_reported_by_image_and_the_others_go_on(job, settings, tmp_path, monkeypatch):
    refine_loaded = local.refine_loaded

    def flaky(refiner, loaded):
        if loaded.task.path.endswith("2011_000006.jpg"):
            raise RuntimeError("out of memory")
        return refine_loaded(refiner, loaded)

    monkeypatch.setattr(local, "refine_loaded", flaky)
    out = tmp_path / "refined.json"
    summary = run(job, settings, out, engine="pipelined", workers=2)
    assert summary.refined == 2 and len(summary.failed) == 1
    assert "2011_000006.jpg: refinement failed (RuntimeError: out of memory)" in summary.failed[0].error
    coarse = json.loads((DEMO / "predictions.json").read_text())
    refined = json.loads(out.read_text())
    failed_task = job.tasks[summary.failed[0].index]
    kept = [r for r in refined if r["file_name"].endswith("2011_000006.jpg")]
    assert [r["segmentation"] for r in kept] == failed_task.rles
    assert len(refined) == len(coarse)


def test_pipelined_reads_a_bounded_number_of_images_ahead(job, settings):
    tasks = [dataclasses.replace(job.tasks[i % 3], index=i) for i in range(24)]
    taken = []

    def source():
        for task in tasks:
            taken.append(task.index)
            yield task

    refiners = [settings.build(), settings.build()]
    consumed = 0
    for result in local.run_pipelined(source(), refiners):
        consumed += 1
        # queues of W + 1 loaded and 2W + 2 results, W refining, one held by each of W readers
        assert len(taken) - consumed <= 6 * len(refiners) + 3
        assert result.error is None
    assert consumed == len(tasks)
