"""Exporting a session: where it goes by default, which existing files it would replace, the
original entries a COCO export keeps for images the session could not read, and what it leaves out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .. import RESOURCES
from ..io.atomic import atomic_write_json, folder_is_writable
from ..io.dataset import Dataset
from ..io.jsonfile import is_int, read_json


@dataclass(frozen=True)
class DatasetSource:
    """Where a session's dataset was read from.

    path: the folder or file opened. format: "coco" | "cityscapes" | "labelme". annotations: the
    COCO annotations file (format "coco"), else None. images_dir: the folder COCO ``file_name`` is
    relative to. predictions: the predictions file or folder reviewed, or None.
    """

    path: Path
    format: str
    annotations: Path | None = None
    images_dir: Path | None = None
    predictions: Path | None = None

    def to_dict(self) -> dict:
        """Plain JSON data (paths as strings) for the session file."""
        return {f.name: (None if getattr(self, f.name) is None else str(getattr(self, f.name)))
                for f in fields(self)}

    @classmethod
    def from_dict(cls, data) -> "DatasetSource | None":
        """The source :meth:`to_dict` wrote, or None when ``data`` is not such a dict (older session files)."""
        if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not isinstance(data.get("format"), str):
            return None
        paths = {k: Path(data[k]) if isinstance(data.get(k), str) else None
                 for k in ("annotations", "images_dir", "predictions")}
        return cls(Path(data["path"]), data["format"], **paths)


@dataclass
class ExportReport:
    """What an export wrote and what it did not.

    files: the files written. images, instances: how many were exported. kept: lines about original
    entries written unchanged (images the session could not read). left_out: lines about what the
    export does not hold.
    """

    files: list[Path]
    images: int
    instances: int
    kept: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def default_export_path(source: DatasetSource | None) -> Path:
    """A visible folder beside the dataset's folder, ``<folder>_export``; in the home folder when that
    is not writable (or marked read-only) or the dataset is the shipped demo (inside the package)."""
    if source is None:
        return Path.home() / "bpr_studio_export"
    path = Path(source.path).resolve()
    folder = path if path.is_dir() else path.parent
    if folder.is_relative_to(RESOURCES.resolve()):
        return Path.home() / f"bpr_studio_{folder.name}_export"
    if folder_is_writable(folder.parent):
        return folder.parent / f"{folder.name}_export"
    return Path.home() / f"{folder.name}_export"


def coco_target(out: str | Path) -> Path:
    """The annotations file a COCO export to ``out`` writes (a .json path, or a folder's annotations.json)."""
    out = Path(out)
    return out if out.suffix.lower() == ".json" else out / "annotations.json"


def files_replaced(dataset: Dataset, out: str | Path, format: str, copy_images: bool = False) -> list[Path]:
    """Existing files an export of ``dataset`` to ``out`` would write over.

    coco: the annotations file; labelme: each image's JSON (and copied image); cityscapes: every
    file already under ``out``'s gtFine/, results/ (and leftImg8bit/ when copying images), as the
    names there depend on the layout.
    """
    out = Path(out)
    if format == "coco":
        return [coco_target(out)] if coco_target(out).exists() else []
    if format == "labelme":
        names = [out / (rec.path.stem + ".json") for rec in dataset.images]
        if copy_images:
            names += [out / rec.path.name for rec in dataset.images
                      if (out / rec.path.name).resolve() != Path(rec.path).resolve()]
        return [p for p in names if p.exists()]
    folders = ("gtFine", "results") + (("leftImg8bit",) if copy_images else ())
    return sorted(p for name in folders if (out / name).is_dir() for p in (out / name).rglob("*") if p.is_file())


def _names(paths, limit: int = 5) -> str:
    names = [Path(p).name for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def export_dataset(dataset: Dataset, out: str | Path, format: str, source: DatasetSource | None = None,
                   problems: list | None = None, omitted: int = 0, held: Dataset | None = None,
                   **options) -> ExportReport:
    """Write ``dataset`` with io.formats.save_dataset and say what the export holds and leaves out.

    source: where the session's dataset came from; a COCO export of a COCO annotations file (no
    predictions) then keeps the original image and annotation entries that the session could not
    read, unchanged. problems: (path, message) of the files left out when the dataset was opened.
    omitted: unreviewed instances the caller left out. held: every image and instance the session
    holds (default ``dataset``), so that instances left out on purpose are not taken for unreadable.
    """
    from ..io.formats import save_dataset

    problems = list(problems or [])
    keep = format == "coco" and source is not None and source.format == "coco" and source.annotations is not None \
        and source.predictions is None and not options.get("results")
    report = ExportReport([], len(dataset.images), sum(len(r.instances) for r in dataset.images))
    if keep:
        report.files = [_write_coco_keeping(dataset, held or dataset, coco_target(out), source, report, **options)]
    else:
        report.files = save_dataset(dataset, out, format, **options)
        if problems:
            report.left_out.append(f"{len(problems)} file(s) that could not be read when the dataset was opened: "
                                   f"{_names(p for p, _ in problems)}")
    if omitted:
        report.left_out.append(f"{omitted} unreviewed instance(s)")
    return report


def _write_coco_keeping(dataset: Dataset, held: Dataset, target: Path, source: DatasetSource,
                        report: ExportReport, **options) -> Path:
    """write_coco, plus the original entries of the images and annotations the session does not hold."""
    from ..io.coco import write_coco

    original = read_json(source.annotations, dict)  # read before anything is written (it may be the target)
    ids = {rec.image_id for rec in held.images}
    ann_ids = {inst.source_id for rec in held.images for inst in rec.instances}
    images = [e for e in original.get("images", []) if isinstance(e, dict) and e.get("id") not in ids]
    kept_ids = {e.get("id") for e in images}
    annotations = [a for a in original.get("annotations", []) if isinstance(a, dict) and (
        a.get("image_id") in kept_ids or (a.get("image_id") in ids and a.get("id") not in ann_ids))]
    if not images and not annotations:
        return write_coco(dataset, target, **options)
    staging = target.with_name(f".{target.name}.export")
    try:
        data = read_json(write_coco(dataset, staging, **options), dict)
    finally:
        staging.unlink(missing_ok=True)
    used_images = {e["id"] for e in data["images"]}
    next_image = max([i for i in used_images if is_int(i)], default=0) + 1
    renamed = {}
    images_dir = source.images_dir or Path(source.annotations).parent
    for entry in images:
        entry = dict(entry)
        if entry.get("id") in used_images or not is_int(entry.get("id")):
            renamed[entry.get("id")], next_image = next_image, next_image + 1
            entry["id"] = renamed[entry.get("id")]
        if isinstance(entry.get("file_name"), str):
            where = images_dir / entry["file_name"]
            entry["file_name"] = Path(os.path.relpath(where.absolute(), target.parent.absolute())).as_posix()
        data["images"].append(entry)
    used_anns = {a["id"] for a in data["annotations"]}
    next_ann = max([i for i in used_anns if is_int(i)], default=0) + 1
    for ann in annotations:
        ann = dict(ann)
        ann["image_id"] = renamed.get(ann.get("image_id"), ann.get("image_id"))
        if ann.get("id") in used_anns or not is_int(ann.get("id")):
            ann["id"], next_ann = next_ann, next_ann + 1
        used_anns.add(ann["id"])
        data["annotations"].append(ann)
    if images:
        report.kept.append(f"{len(images)} image(s) the session could not read "
                           f"({_names(e.get('file_name', '?') for e in images)}) and their "
                           f"{sum(a.get('image_id') in kept_ids for a in annotations)} annotation(s)")
    loose = sum(a.get("image_id") in ids for a in annotations)
    if loose:
        report.kept.append(f"{loose} annotation(s) the session could not read, of images it holds")
    return atomic_write_json(target, data)
