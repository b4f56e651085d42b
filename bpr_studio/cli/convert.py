"""``bpr-studio convert``: convert a dataset between COCO, Cityscapes and labelme, with a progress bar."""

from __future__ import annotations

import argparse

from ..io.formats import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source_format", choices=FORMATS, required=True, help="format of IN")
    parser.add_argument("source", metavar="IN",
                        help="coco: annotations JSON, results JSON (with --images), or images folder (with "
                             "--annotations); cityscapes: root with leftImg8bit/ and gtFine/; labelme: folder of JSON files")
    parser.add_argument("--to", dest="target_format", choices=FORMATS, required=True, help="format of OUT")
    parser.add_argument("target", metavar="OUT",
                        help="coco: JSON file (or folder for annotations.json); cityscapes, labelme: folder")
    parser.add_argument("--images", metavar="DIR",
                        help="coco: folder the file_name entries are relative to (default: the JSON's folder); "
                             "without an annotations file, the images that --predictions belong to")
    parser.add_argument("--annotations", metavar="JSON", help="coco: annotations file, when IN is the images folder")
    parser.add_argument("--predictions", metavar="PATH",
                        help="convert these predictions instead of the ground truth: a COCO results JSON or a "
                             "Cityscapes results folder (*.txt + mask PNGs)")
    parser.add_argument("--polygons", action="store_true", help="coco out: polygons instead of RLE (holes kept by cuts)")
    parser.add_argument("--results", action="store_true", help="coco out: write a results list for evaluation")
    parser.add_argument("--category-map", metavar="NAME=LABEL", action="append", default=[],
                        help="cityscapes out: map a category (name or id) to a Cityscapes label, or to '-' to leave "
                             "it out; repeat for several")
    parser.add_argument("--overlap", choices=("later", "smaller"), default="later",
                        help="cityscapes out: which ground-truth instance keeps the pixels where instances "
                             "overlap (instanceIds holds one per pixel): the later one in the file (default) or "
                             "the smaller one")
    parser.add_argument("--split", default="val", help="cityscapes out: split folder for images from elsewhere (val)")
    parser.add_argument("--no-copy-images", action="store_true", help="cityscapes out: do not copy images to leftImg8bit/")
    parser.add_argument("--copy-images", action="store_true", help="labelme out: copy images beside the JSON files")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out unreadable images and bad instances (listed at the end) instead of stopping")


def _category_map(pairs: list[str]) -> dict:
    from ..io.errors import DatasetError

    mapping = {}
    for pair in pairs:
        name, sep, label = pair.partition("=")
        if not sep or not name:
            raise DatasetError(f"--category-map {pair!r}: expected NAME=LABEL")
        mapping[int(name) if name.isdigit() else name] = label
    return mapping


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from ..io.atomic import check_output_path
    from ..io.errors import DatasetError
    from ..io.formats import load_dataset, save_dataset

    target = Path(args.target)
    if args.target_format == "coco":
        check_output_path(target if target.suffix.lower() == ".json" else target / "annotations.json")
    else:
        check_output_path(target, folder=True)
    category_map = _category_map(args.category_map)
    errors: list | None = [] if args.skip_bad else None
    source, annotations, predictions = Path(args.source), args.annotations, args.predictions
    if args.source_format == "coco" and source.is_file():
        if source.read_bytes().lstrip().startswith(b"["):  # a results file: a list of predictions
            if not (args.images or annotations):
                raise DatasetError(f"{source}: a COCO results file; give its images with --images DIR "
                                   "(and --annotations FILE when its image_id values come from that file)")
            predictions = source
            source = Path(args.images) if args.images else Path(annotations)
            annotations = annotations if args.images else None
        elif args.images:
            source, annotations = Path(args.images), source

    with tqdm(desc="reading", unit="image", file=sys.stderr) as bar:
        def reading(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()
        dataset = load_dataset(source, args.source_format, annotations=annotations, predictions=predictions,
                               errors=errors, progress=reading)

    options: dict = {}
    kept = {cid: True for cid in dataset.categories}  # category id -> written
    categories = set(dataset.categories.values())  # the category names written
    overlaps: list = []
    if args.target_format == "coco":
        options = {"polygons": args.polygons, "results": args.results}
    elif args.target_format == "cityscapes":
        from ..io.cityscapes import cityscapes_labels

        labels = cityscapes_labels(dataset, category_map)
        kept = {cid: label is not None for cid, label in labels.items()}
        categories = {label.name for label in labels.values() if label is not None}
        options = {"category_map": category_map, "split": args.split, "copy_images": not args.no_copy_images,
                   "overlap": args.overlap, "overlaps": overlaps}
    elif args.target_format == "labelme":
        options = {"copy_images": args.copy_images}
    with tqdm(desc="writing", unit="image", file=sys.stderr) as bar:
        def writing(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()
        written = save_dataset(dataset, target, args.target_format, progress=writing, **options)

    instances = [inst for r in dataset.images for inst in r.instances]
    out = [inst for inst in instances if kept.get(inst.category_id, True)]
    print(f"{_plural(len(dataset.images), 'image')}, {_plural(len(out), 'instance')}, "
          f"{len(categories)} categor{'y' if len(categories) == 1 else 'ies'} -> {target} "
          f"({_plural(len(written), 'file')})")
    if len(out) < len(instances):
        left = {}
        for inst in instances:
            if not kept.get(inst.category_id, True):
                name = dataset.categories.get(inst.category_id, str(inst.category_id))
                left[name] = left.get(name, 0) + 1
        print(f"left out by the category map: {_plural(len(instances) - len(out), 'instance')} ("
              + ", ".join(f"{name} {n}" for name, n in sorted(left.items())) + ")")
    if overlaps:
        rule = {"later": "the later instance keeps them; --overlap smaller gives them to the smaller one",
                "smaller": "the smaller instance keeps them"}[args.overlap]
        print(f"overlaps: {_plural(len(overlaps), 'instance')} lost {_plural(sum(o.lost for o in overlaps), 'pixel')} "
              f"to overlapping instances (Cityscapes holds one instance per pixel; {rule}):")
        for o in overlaps[:10]:
            print(f"  {o.image.name}: instance {o.instance} ({o.label}) lost {o.lost} of {o.area} pixels")
        if len(overlaps) > 10:
            print(f"  ... and {len(overlaps) - 10} more")
    for path, message in errors or []:
        print(f"skipped: {message}", file=sys.stderr)
    return 1 if errors else 0
