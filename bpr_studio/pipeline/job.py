"""A dataset refinement job: the images to refine (as tasks), the predictions file's entries, and
the refined results file made from the tasks' results.

Every entry of the predictions file is written back, in its order: refined when its image was
refined, its coarse mask unchanged when its image failed (missing, unreadable, another size), and
as it was read when it could not be read at all (unknown image, mask of the wrong size). Problems
are grouped by image, one message each.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..io.coco import coco_image_ids, images_from_folder, read_coco, read_coco_results
from ..io.dataset import Instance
from ..io.jsonfile import read_json
from .work import ImageResult, ImageTask


@dataclass
class RefineJob:
    """tasks: the images with at least one readable prediction. entries: the predictions file's
    entries. slots: for each entry, (task index, position in the task's masks), or None when the
    entry could not be read. instances: per task, the Instance read from each of its entries.
    image_ids, file_names: per task, what the results file says (as ``write_coco_results`` writes).
    problems: image label -> messages of what could not be read; unreadable: image label -> number
    of entries left as they were."""

    tasks: list[ImageTask]
    entries: list
    slots: list[tuple[int, int] | None]
    instances: list[list[Instance]]
    image_ids: list
    file_names: list[str]
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unreadable: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def read_job(images_dir: str | Path, predictions: str | Path, annotations: str | Path | None = None) -> RefineJob:
    """Read the image table (annotations file, or the folder) and the predictions into a job.

    Image files named by an annotations file are not opened here: each is read when it is refined,
    and a bad one is reported then. Raises DatasetError when a whole file is unreadable.
    """
    table_problems: list[tuple[Path, str]] = []
    if annotations is not None:
        table = read_coco(annotations, images_dir, errors=table_problems, check_images=False)
    else:
        table = images_from_folder(images_dir, errors=table_problems)
    entries = read_json(predictions, list)
    entry_problems: list[tuple[Path, str]] = []
    matched: list[tuple[int | None, str | None]] = []
    dataset = read_coco_results(predictions, table, errors=entry_problems, entry_images=matched)

    records = [r for r in dataset.images if r.instances]
    task_of = {id(r): t for t, r in enumerate(records)}
    tasks = [ImageTask(t, str(r.path), r.width, r.height, [inst.rle for inst in r.instances])
             for t, r in enumerate(records)]
    ids = coco_image_ids(dataset)
    id_of = {id(r): i for r, i in zip(dataset.images, ids)}
    common = Path(os.path.commonpath([str(r.path.absolute().parent) for r in records])) if records else Path()
    job = RefineJob(tasks, entries, [], [r.instances for r in records], [id_of[id(r)] for r in records],
                    [Path(os.path.relpath(r.path.absolute(), common)).as_posix() for r in records])

    for path, message in table_problems:
        job.problems[str(path)].append(message)
    position = defaultdict(int)  # task -> entries of it placed so far
    for entry, (image, error) in zip(entries, matched):
        record = None if image is None else dataset.images[image]
        if error is None:
            t = task_of[id(record)]
            job.slots.append((t, position[t]))
            position[t] += 1
            continue
        job.slots.append(None)
        label = str(record.path) if record is not None else _unknown_image_label(entry, job.problems)
        job.problems[label].append(error)
        job.unreadable[label] += 1
    return job


def _unknown_image_label(entry, problems: dict[str, list[str]]) -> str:
    """The label of an entry whose image was not found: the bad image file it names when the table
    reported one, else its file_name or image_id."""
    name = entry.get("file_name") if isinstance(entry, dict) else None
    if isinstance(name, str) and name:
        suffix = "/" + name.replace("\\", "/").lstrip("./")
        for label in problems:
            if ("/" + Path(label).as_posix()).endswith(suffix):
                return label
        return name
    image_id = entry.get("image_id") if isinstance(entry, dict) else None
    return f"image_id {image_id!r}"


def result_entry(job: RefineJob, task: int, position: int, rle: dict) -> dict:
    """The results-file entry of one instance with mask ``rle`` (as ``write_coco_results`` writes)."""
    inst = job.instances[task][position]
    return {"image_id": job.image_ids[task], "file_name": job.file_names[task], "category_id": inst.category_id,
            "segmentation": rle, "bbox": Instance(inst.category_id, rle).bbox,
            "score": 1.0 if inst.score is None else inst.score}


def output_entries(job: RefineJob, results: dict[int, ImageResult]) -> list:
    """The refined results file: one entry per entry of the predictions file, in its order. results:
    task index -> successful result; a task without one keeps its coarse masks."""
    out = []
    for entry, slot in zip(job.entries, job.slots):
        if slot is None:
            out.append(entry)
            continue
        t, j = slot
        result = results.get(t)
        rle = result.rles[j] if result is not None else job.tasks[t].rles[j]
        out.append(result_entry(job, t, j, rle))
    return out


def problem_lines(job: RefineJob, failures: list[ImageResult], written: bool = True) -> list[str]:
    """One line per image with a problem: what went wrong and (when the output was ``written``) how
    many of its masks were written unchanged."""
    problems = {label: list(messages) for label, messages in job.problems.items()}
    unchanged = dict(job.unreadable)
    for result in failures:
        label = job.tasks[result.index].path
        problems.setdefault(label, []).append(result.error)
        unchanged[label] = unchanged.get(label, 0) + len(job.tasks[result.index].rles)
    lines = []
    for label, messages in problems.items():
        line = messages[0] + (f" (and {len(messages) - 1} more problems)" if len(messages) > 1 else "")
        if unchanged.get(label) and written:
            n = unchanged[label]
            line += f"; its {n} coarse mask{'s' if n > 1 else ''} written unchanged"
        lines.append(line)
    return lines
