"""The Ray engine: Ray Data ``map_batches`` over the tasks with an actor pool, one Refiner per actor.

Each actor loads its Refiner once and reads its images by path: only task descriptions (paths and
coarse RLE masks) and refined RLE masks travel through the driver, in blocks of a few images (one
actor call each); within a block the actor decodes the next image while the network refines the
current one. Actors take one GPU each when the cluster has GPUs, else an equal share of its CPUs
(as many torch and ONNX Runtime threads). Without an address a local Ray is started for the run (and
shut down after); with one, the run joins that cluster (``ray start --head`` on the first machine,
``ray start --address HEAD:6379`` on the others; every machine needs bpr-studio installed and the
images at the same path).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .local import run_pipelined
from .work import ImageResult, ImageTask, RefinerSettings


class RayRefiner:
    """The callable class of ``map_batches``: one Refiner per actor, built once. A batch is a dict of
    numpy arrays with a ``task`` column of JSON strings; each image's result is yielded as it
    finishes, a one-row batch with a ``result`` column of JSON strings. Within a batch the next
    images are decoded while the network refines the current one (:func:`run_pipelined` with this
    actor's refiner)."""

    def __init__(self, settings: RefinerSettings, threads: int | None = None):
        """threads: torch and ONNX Runtime threads of this actor (None: torch's default)."""
        if threads:
            torch.set_num_threads(threads)
        self.refiner = settings.build()

    def __call__(self, batch: dict) -> Iterator[dict]:
        tasks = [ImageTask(**json.loads(text)) for text in batch["task"]]
        for result in run_pipelined(tasks, [self.refiner], readers=1):
            yield {"result": np.array([json.dumps(result.to_dict(), separators=(",", ":"))], dtype=object)}


def block_size(tasks: int, workers: int) -> int:
    """Images per Ray Data block (one actor call, one Ray task): several, as each task costs Ray Data
    some milliseconds, but about four blocks per actor and at most 16 images, so that the last
    blocks (the run's tail, when some actors are done) are short."""
    return max(1, min(16, math.ceil(tasks / (4 * workers))))


def last_error_line(exc: BaseException) -> str:
    """The exception at the end of a Ray error's text without its module path, e.g. "DeviceError: CUDA
    is not available on this machine (found: CPU)" for an actor whose refiner could not be built."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    name, sep, message = lines[-1].partition(": ")
    return f"{name.rsplit('.', 1)[-1]}{sep}{message}" if sep and " " not in name else lines[-1]


def package_root() -> str:
    """The folder that holds this bpr_studio package (put on the local workers' PYTHONPATH when they
    would not import the same code as the driver)."""
    return str(Path(__file__).resolve().parents[2])


def workers_import_this_package() -> bool:
    """Whether a fresh interpreter of this Python, started outside the source tree (as Ray starts its
    workers), finds this bpr_studio: true when it is installed (also ``pip install -e``), false when
    the driver runs from a source folder that is not."""
    code = "import importlib.util as u; s = u.find_spec('bpr_studio'); print(s.origin if s else '')"
    try:
        found = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), capture_output=True,
                               text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(found) and Path(found).resolve() == Path(__file__).resolve().parents[1] / "__init__.py"


def init_local_ray(num_cpus: int | None = None, **kwargs) -> None:
    """Start a local Ray whose workers import this bpr_studio (no dashboard). The package's folder goes
    on the workers' PYTHONPATH only when they would not find it: a runtime_env makes Ray start
    workers of its own instead of the ones it prestarts, which cost 5-10 s more to the first
    result on 2 cores (README, "Refining a whole dataset")."""
    import ray

    kwargs.setdefault("include_dashboard", False)
    if "runtime_env" not in kwargs and not workers_import_this_package():
        path = os.pathsep.join(p for p in (package_root(), os.environ.get("PYTHONPATH")) if p)
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
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
        cpus = max(1, int(resources.get("CPU", 1)))
        workers = workers or gpus or cpus
        threads = None if gpus else max(1, cpus // workers)  # CPU actors split the cluster's cores
        items = [{"task": json.dumps(dataclasses.asdict(t), separators=(",", ":"))} for t in tasks]
        if not items:
            return
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        data = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / block_size(len(items), workers)))
        # batch_size None: one call per block (Ray Data sends each actor its next block while it works)
        data = data.map_batches(RayRefiner, fn_constructor_kwargs={"settings": settings, "threads": threads},
                                batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                                num_gpus=1 if gpus else 0, num_cpus=threads or 0)
        try:
            for row in data.iter_rows():
                yield ImageResult(**json.loads(row["result"]))
        except ray.exceptions.ActorDiedError as exc:  # Ray's text is a page of tracebacks; its last line says why
            raise ValueError(f"a Ray actor died: {last_error_line(exc)}") from None
    finally:
        if started:
            ray.shutdown()
