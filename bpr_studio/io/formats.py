"""One entry point for every dataset format: guess the format, load a dataset, save a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatasetError
from .jsonfile import read_json

if TYPE_CHECKING:  # the readers and writers are imported when used: the command line reads FORMATS at start
    from .dataset import Dataset

FORMATS = ("coco", "cityscapes", "labelme")  # the registry of dataset formats: CLI, window and tests read it


def guess_format(path: str | Path) -> str:
    """"coco" | "cityscapes" | "labelme" for a dataset file or folder.

    A JSON file with an 'images' list is COCO, one with 'shapes' is labelme. A folder with
    ``gtFine/`` or ``leftImg8bit/`` (or ``*_gtFine_instanceIds.png`` files) is Cityscapes; a
    folder whose JSON files (directly in it) include a COCO annotations file and no labelme file
    is COCO (a COCO results list beside it, such as ``predictions.json``, does not count); any
    other folder is labelme (labelme JSON files, or only images).
    """
    path = Path(path)
    if path.is_file():
        data = read_json(path, dict)
        if isinstance(data.get("images"), list):
            return "coco"
        if isinstance(data.get("shapes"), list):
            return "labelme"
        raise DatasetError(f"{path}: neither a COCO file ('images') nor a labelme file ('shapes')")
    if not path.is_dir():
        raise DatasetError(f"{path}: dataset file or folder not found")
    return _folder_format(path)[0]


def _folder_format(folder: Path) -> tuple[str, list[Path], list[str]]:
    """(guess_format of ``folder``, its COCO annotations files, messages of its unreadable JSON files)."""
    if ((folder / "gtFine").is_dir() or (folder / "leftImg8bit").is_dir()
            or next(folder.rglob("*_gtFine_instanceIds.png"), None)):
        return "cityscapes", [], []
    labelme, coco, unreadable = _scan_folder(folder, stop_at_labelme=True)
    return ("coco" if coco and not labelme else "labelme"), coco, unreadable


def _scan_folder(folder: Path, stop_at_labelme: bool) -> tuple[bool, list[Path], list[str]]:
    """(a labelme file was found, the COCO annotations files, messages of unreadable JSON files) of
    the JSON files directly in ``folder``; with ``stop_at_labelme`` the scan ends at the first
    labelme file (a labelme folder's files are then not all read twice)."""
    coco, unreadable = [], []
    for json_path, data in _json_objects(folder, unreadable):
        if stop_at_labelme and isinstance(data.get("shapes"), list):
            return True, coco, unreadable
        if isinstance(data.get("images"), list):
            coco.append(json_path)
    return False, coco, unreadable


def _json_objects(folder: Path, problems: list | None = None):
    """Yield ``(path, object)`` for each JSON file directly in ``folder`` whose top level is an object.

    JSON lists (COCO results) are passed over; so are unreadable files, whose messages are
    appended to ``problems`` when it is a list.
    """
    for json_path in sorted(folder.glob("*.json")):
        try:
            data = read_json(json_path, object)
        except DatasetError as exc:
            if problems is not None:
                problems.append(str(exc))
            continue
        if isinstance(data, dict):
            yield json_path, data


def dataset_files(path: str | Path, format: str | None = None,
                  annotations: str | Path | None = None) -> tuple[str, Path | None, Path | None]:
    """(format, COCO annotations file or None, images folder or None) that load_dataset reads ``path``
    from; format None is guessed (see guess_format). A folder's JSON files are read once for both."""
    path = Path(path)
    if format is None and annotations is None and path.is_dir():
        format, coco, unreadable = _folder_format(path)
        return (format, *_coco_files_of_folder(path, coco, unreadable)) if format == "coco" else (format, None, None)
    format = format or ("coco" if annotations is not None else guess_format(path))
    return (format, *coco_files(path, annotations)) if format == "coco" else (format, None, None)


def coco_files(path: Path, annotations) -> tuple[Path | None, Path | None]:
    """(annotations file or None, images folder or None) that load_dataset reads a COCO ``path`` from."""
    if annotations is not None:
        return Path(annotations), (path if path.is_dir() else None)
    if path.is_file():
        return path, None
    _, coco, unreadable = _scan_folder(path, stop_at_labelme=False)
    return _coco_files_of_folder(path, coco, unreadable)


def _coco_files_of_folder(path: Path, coco: list[Path], unreadable: list[str]) -> tuple[Path | None, Path | None]:
    """coco_files of a folder whose COCO annotations files and unreadable JSON files are known."""
    if len(coco) == 1:
        return coco[0], None
    if len(coco) > 1:
        raise DatasetError(f"{path}: {len(coco)} COCO files found ({', '.join(j.name for j in coco)}); name one")
    if unreadable:  # the annotations may be the unreadable file: loading the bare images would hide that
        raise DatasetError(f"{path}: no readable COCO annotations file; {'; '.join(unreadable)}")
    return None, path


def load_dataset(path: str | Path, format: str | None = None, annotations: str | Path | None = None,
                 predictions: str | Path | None = None, errors: list | None = None, progress=None,
                 **options) -> Dataset:
    """Load a dataset in any supported format.

    path: a COCO JSON file (images relative to its folder), a folder of images (with
    ``annotations`` = a COCO JSON whose file_name is relative to that folder), a labelme folder
    or JSON file, or a Cityscapes root (with ``leftImg8bit/`` and ``gtFine/``). format: "coco" |
    "cityscapes" | "labelme", or None to guess. annotations: COCO annotations file when ``path``
    is the images folder. predictions: a COCO results JSON or a Cityscapes results folder
    (``*.txt`` + mask PNGs), for any format; when given, the returned images carry the
    predictions (with scores) instead of the ground truth. errors: None raises the first
    DatasetError; a list collects ``(path, message)`` per unreadable image, file or instance and
    loads the rest. progress: progress(done, total). options: passed to the format's reader
    (cityscapes: ``split``).
    """
    path = Path(path)
    format, ann_file, images_dir = dataset_files(path, format, annotations)
    if format == "coco":
        from .coco import images_from_folder, read_coco
        if ann_file is None:
            dataset = images_from_folder(images_dir, errors=errors, progress=progress)
        else:
            dataset = read_coco(ann_file, images_dir, errors=errors, progress=progress)
    elif format == "labelme":
        from .labelme import read_labelme
        dataset = read_labelme(path, errors=errors, progress=progress)
    elif format == "cityscapes":
        from .cityscapes import read_cityscapes
        dataset = read_cityscapes(path, errors=errors, progress=progress, **options)
    else:
        raise DatasetError(f"{path}: unknown dataset format {format!r} (expected one of {', '.join(FORMATS)})")
    if predictions is None:
        return dataset
    predictions = Path(predictions)
    if predictions.is_dir():
        from .cityscapes import read_cityscapes_results
        return read_cityscapes_results(predictions, dataset, errors=errors)
    from .coco import read_coco_results
    return read_coco_results(predictions, dataset, errors=errors)


def save_dataset(dataset: Dataset, out: str | Path, format: str, progress=None, **options) -> list[Path]:
    """Write ``dataset`` in ``format``; returns the files written (each written atomically).

    coco: ``out`` is the annotations JSON path, or a folder that gets ``annotations.json``;
    options ``polygons=False``, ``results=False`` (True: a results list for evaluation instead of
    an annotations file; an annotations file keeps scores too, in a ``score`` key). labelme: ``out`` is a folder; option ``copy_images=False``.
    cityscapes: ``out`` is the root folder; options ``category_map``, ``split``, ``copy_images``
    ``overlap``, ``overlaps`` (see ``bpr_studio.io.cityscapes.write_cityscapes``).
    """
    out = Path(out)
    if format == "coco":
        from .coco import write_coco, write_coco_results
        target = out if out.suffix.lower() == ".json" else out / "annotations.json"
        if options.pop("results", False):
            written = [write_coco_results(dataset, target, **options)]
        else:
            written = [write_coco(dataset, target, **options)]
        if progress:
            progress(len(dataset.images), len(dataset.images))
        return written
    if format == "labelme":
        from .labelme import write_labelme
        return write_labelme(dataset, out, progress=progress, **options)
    if format == "cityscapes":
        from .cityscapes import write_cityscapes
        return write_cityscapes(dataset, out, progress=progress, **options)
    raise DatasetError(f"{out}: unknown dataset format {format!r} (expected one of {', '.join(FORMATS)})")
