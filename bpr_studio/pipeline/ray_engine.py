"""The Ray engine: Ray Data ``map_batches`` over the tasks with an actor pool, one Refiner per actor.

Each actor loads its Refiner once and reads its images by path: only task descriptions (paths and
coarse RLE masks) and refined RLE masks travel through the driver. Actors take one GPU each when the
cluster has GPUs, else one CPU each. Without an address a local Ray is started for the run (and
shut down after); with one, the run joins that cluster (``ray start --head`` on the first machine,
``ray start --address HEAD:6379`` on the others; every machine needs bpr-studio installed and the
images at the same path).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..core.config import RefinerConfig
from .work import ImageResult, ImageTask, RefinerSettings, refine_task


class RayRefiner:
    """The callable class of ``map_batches``: one Refiner per actor, built once; a batch is a dict of
    numpy arrays with a ``task`` column of JSON strings, the answer a ``result`` column of JSON strings."""

    def __init__(self, settings: dict):
        import torch

        config = RefinerConfig(**settings["config"])
        threads = settings.get("threads")
        if threads:
            torch.set_num_threads(threads)
        self.refiner = RefinerSettings(config, settings["weights"], settings["device"], settings["fast"]).build()

    def __call__(self, batch: dict) -> dict:
        out = []
        for text in batch["task"]:
            result = refine_task(self.refiner, ImageTask(**json.loads(text)))
            out.append(json.dumps(result.to_dict(), separators=(",", ":")))
        return {"result": np.array(out, dtype=object)}


def package_root() -> str:
    """The folder that holds this bpr_studio package (put on the local workers' PYTHONPATH, so they
    import the same code as the driver)."""
    return str(Path(__file__).resolve().parents[2])


def init_local_ray(num_cpus: int | None = None, **kwargs) -> None:
    """Start a local Ray whose workers import this bpr_studio (no dashboard)."""
    import ray

    kwargs.setdefault("include_dashboard", False)
    path = os.pathsep.join(p for p in (package_root(), os.environ.get("PYTHONPATH")) if p)
    kwargs.setdefault("runtime_env", {"env_vars": {"PYTHONPATH": path}})
    ray.init(num_cpus=num_cpus, **kwargs)


def run_ray(tasks: Iterable[ImageTask], settings: RefinerSettings, workers: int | None = None,
            address: str | None = None) -> Iterator[ImageResult]:
    """Refine the tasks on Ray actors, yielding results as they finish.

    workers: actors in the pool (default: the cluster's GPUs, else its CPUs). address: a Ray
    cluster to join ("auto" or HOST:PORT); None uses the running Ray of this process, else starts
    a local one for the run.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'bpr-studio[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            init_local_ray(num_cpus=max(os.cpu_count() or 1, workers or 1), log_to_driver=False)
        started = True
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        workers = workers or gpus or max(1, int(resources.get("CPU", 1)))
        items = [{"task": json.dumps(dataclasses.asdict(t), separators=(",", ":"))} for t in tasks]
        if not items:
            return
        config = dataclasses.asdict(settings.config)
        actor_settings = {"config": config, "weights": settings.weights, "device": settings.device,
                          "fast": settings.fast, "threads": None if gpus else 1}
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        data = ray.data.from_items(items, override_num_blocks=len(items))  # one image per block: even load
        data = data.map_batches(RayRefiner, fn_constructor_kwargs={"settings": actor_settings}, batch_size=1,
                                batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                                num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)
        for row in data.iter_rows():
            yield ImageResult(**json.loads(row["result"]))
    finally:
        if started:
            ray.shutdown()
