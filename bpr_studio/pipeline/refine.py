"""Refine a whole dataset on one of the engines, with shards, resume and an atomic final write."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..core.refiner import pick_device
from ..io.atomic import atomic_write_json
from .job import RefineJob, output_entries
from .local import run_pipelined, run_serial, threads_per_refiner
from .shards import ShardStore, file_digest
from .work import ImageResult, RefinerSettings

ENGINES = ("serial", "pipelined", "ray")


@dataclass
class RunSummary:
    """What a run did. written: entries in the output file (0 and out_written False when nothing could
    be refined); refined: images refined (this run and resumed shards); failed: the images that failed;
    patches, kept_small: over every refined image; run_patches, seconds, first_result_s: this run's
    patches, wall time and time to its first result (None without results); resumed: images taken
    from an earlier run's shards; discarded: earlier results dropped for want of --resume."""

    out_written: bool = False
    written: int = 0
    refined: int = 0
    failed: list[ImageResult] = field(default_factory=list)
    patches: int = 0
    kept_small: int = 0
    run_patches: int = 0
    seconds: float = 0.0
    first_result_s: float | None = None
    resumed: int = 0
    discarded: int = 0

    @property
    def patches_per_s(self) -> float:
        return self.run_patches / self.seconds if self.seconds > 0 else 0.0


def fingerprint(images_dir: Path, predictions: Path, annotations: Path | None, settings: RefinerSettings) -> dict:
    """What a run's results depend on: the input files' contents and the refiner settings."""
    weights = Path(settings.weights) if settings.weights else None
    stat = weights.stat() if weights is not None and weights.is_file() else None
    return {"images": str(Path(images_dir).absolute()), "predictions": file_digest(predictions),
            "annotations": file_digest(annotations) if annotations else None,
            "config": settings.config.to_dict(),
            "weights": [str(weights.absolute()), stat.st_size, stat.st_mtime_ns] if stat else str(weights)}


def default_workers(device: str) -> int:
    """Refiners of a pipelined run: one per GPU; on the CPU two, sharing the threads (1.2x one on
    the 2-core development machine, bench/bench_dataset.py), fewer when there is one thread."""
    device = pick_device(device)
    if device.type == "cuda":
        return torch.cuda.device_count() if device.index is None else 1
    if device.type == "cpu":
        return min(2, torch.get_num_threads())
    return 1


def _engine_results(tasks, settings: RefinerSettings, engine: str, workers: int | None, ray_address: str | None,
                    log: Callable[[str], None]):
    changed = settings.config.changed()
    if changed:
        log(f"settings other than the defaults: {changed}")
    if engine == "ray":
        from .ray_engine import run_ray

        log(f"refining on Ray ({ray_address or 'local'}) with {settings.weights or 'the shipped weights'}")
        return run_ray(tasks, settings, workers=workers, address=ray_address)
    if engine == "serial":
        refiner = settings.build()
        log(f"refining on {refiner.device_name} with {refiner.weights_path} (serial)")
        return run_serial(tasks, refiner)
    workers = workers or 1
    first = settings.build()
    devices = [settings.device] * workers
    if first.device.type == "cuda" and settings.device in ("auto", "cuda") and torch.cuda.device_count() > 1:
        devices = [f"cuda:{i % torch.cuda.device_count()}" for i in range(workers)]
    refiners = [first] + [settings.build(d) for d in devices[1:]]
    log(f"refining on {first.device_name} with {first.weights_path} (pipelined, {workers} refiner"
        f"{'s' if workers > 1 else ''})")
    return run_pipelined(tasks, refiners)


def refine_dataset(job: RefineJob, out: str | Path, settings: RefinerSettings, *, engine: str = "pipelined",
                   workers: int | None = None, resume: bool = False, ray_address: str | None = None,
                   fingerprint: dict | None = None, on_start: Callable[[int], None] | None = None,
                   on_result: Callable[[ImageResult], None] | None = None,
                   log: Callable[[str], None] = lambda s: None) -> RunSummary:
    """Refine every task of ``job`` and write the refined results file ``out``.

    Each finished image is appended to the shard folder beside ``out`` at once; at the end the
    results are merged into ``out`` atomically (the file does not exist, or keeps its old content,
    until then) and the shards are removed. resume: skip the images an earlier run with the same
    ``fingerprint`` finished. on_start: called with the number of images this run refines;
    on_result: with each result of this run (after it is on disk).
    Nothing is written when no image could be refined.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    summary = RunSummary()
    shards = ShardStore(out, fingerprint or {})
    done, summary.discarded = shards.start(resume)
    summary.resumed = len(done)
    todo = [t for t in job.tasks if t.index not in done]
    if on_start is not None:
        on_start(len(todo))
    threads = torch.get_num_threads()
    if engine == "pipelined" and workers is None:
        workers = default_workers(settings.device)
    if engine == "pipelined" and workers > 1:
        torch.set_num_threads(threads_per_refiner(workers))
    start = time.perf_counter()
    results = None
    try:
        results = _engine_results(todo, settings, engine, workers, ray_address, log) if todo else None
        for result in results or ():
            if summary.first_result_s is None:
                summary.first_result_s = time.perf_counter() - start
            if result.error is None:
                shards.add(result)
                done[result.index] = result
                summary.run_patches += result.patches
            else:
                summary.failed.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        if results is not None:
            results.close()  # stops the engine's threads or actors when the loop was left early
        summary.seconds = time.perf_counter() - start
        torch.set_num_threads(threads)
        shards.close()
    summary.failed.sort(key=lambda r: r.index)
    summary.refined = len(done)
    summary.patches = sum(r.patches for r in done.values())
    summary.kept_small = sum(r.kept_small for r in done.values())
    if not done and job.entries:
        shards.remove()
        return summary
    entries = output_entries(job, done)
    atomic_write_json(out, entries)
    shards.remove()
    summary.out_written, summary.written = True, len(entries)
    return summary
