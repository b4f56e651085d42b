"""The engines of one process: serial (load, refine, next) and pipelined (threads with bounded queues).

Pipelined: reader threads decode images and masks and extract patch boxes of the next images while
refiner threads run the network; results come back as they finish (not in task order). Queues
hold at most a few images each, so memory stays flat however long the dataset is.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import torch

from ..core.refiner import Refiner
from .work import ImageResult, ImageTask, failed, load_task, refine_loaded, refine_task


def run_serial(tasks: Iterable[ImageTask], refiner: Refiner) -> Iterator[ImageResult]:
    """Refine the tasks one after another in this thread, yielding each result."""
    for task in tasks:
        yield refine_task(refiner, task)


def threads_per_refiner(workers: int) -> int:
    """Torch (and ONNX Runtime) threads for each of ``workers`` refiners sharing this process's threads."""
    return max(1, torch.get_num_threads() // max(1, workers))


_DONE = object()


def run_pipelined(tasks: Iterable[ImageTask], refiners: list[Refiner], readers: int | None = None) -> Iterator[ImageResult]:
    """Refine the tasks with one thread per refiner, fed by ``readers`` loading threads (default: as
    many as refiners). Yields results as they finish. Closing the generator stops the threads."""
    tasks = iter(tasks)
    stop = threading.Event()  # end the work: the consumer left, or a thread crashed
    closed = threading.Event()  # the consumer left: nobody reads the results any more
    lock = threading.Lock()
    readers_left = [readers or len(refiners)]
    crashed: list[BaseException] = []
    loaded: queue.Queue = queue.Queue(maxsize=len(refiners) + 1)
    results: queue.Queue = queue.Queue(maxsize=2 * len(refiners) + 2)

    def put(q: queue.Queue, item, until: threading.Event = stop) -> bool:
        while not until.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        while not stop.is_set():
            with lock:
                task = next(tasks, None)
            if task is None:
                break
            try:
                item = load_task(task, refiners[0])
            except Exception as exc:  # reported for this image; the others go on
                item = failed(task, exc)
            if not put(loaded, item):
                return
        with lock:
            readers_left[0] -= 1
            last = readers_left[0] == 0
        if last:  # the refiners stop once every reader is done
            put(loaded, _DONE)

    def refine(refiner: Refiner) -> None:
        try:
            refine_items(refiner)
        except BaseException as exc:  # not an image's fault (e.g. KeyboardInterrupt): end the run with it
            crashed.append(exc)
            stop.set()
        finally:
            put(results, _DONE, until=closed)

    def refine_items(refiner: Refiner) -> None:
        while not stop.is_set():
            try:
                item = loaded.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                put(loaded, _DONE)  # for the other refiner threads
                break
            if not isinstance(item, ImageResult):
                try:
                    item = refine_loaded(refiner, item)
                except Exception as exc:
                    item = failed(item.task, exc)
            if not put(results, item):
                return

    threads = [threading.Thread(target=read, daemon=True, name=f"bpr-read-{i}") for i in range(readers_left[0])]
    threads += [threading.Thread(target=refine, args=(r,), daemon=True, name=f"bpr-refine-{i}")
                for i, r in enumerate(refiners)]
    for thread in threads:
        thread.start()
    try:
        running = len(refiners)
        while running:
            item = results.get()
            if item is _DONE:
                running -= 1
            elif not stop.is_set():
                yield item
        if crashed:
            raise crashed[0]
    finally:
        closed.set()
        stop.set()
        for thread in threads:
            thread.join()
