"""``bpr-studio convert``: convert a dataset between COCO, Cityscapes and labelme, with a progress bar."""

from __future__ import annotations

import argparse

FORMATS = ("coco", "cityscapes", "labelme")


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


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from ..io.errors import DatasetError
    from ..io.formats import load_dataset, save_dataset

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
    if args.target_format == "coco":
        options = {"polygons": args.polygons, "results": args.results}
    elif args.target_format == "cityscapes":
        options = {"category_map": _category_map(args.category_map), "split": args.split,
                   "copy_images": not args.no_copy_images}
    elif args.target_format == "labelme":
        options = {"copy_images": args.copy_images}
    with tqdm(desc="writing", unit="image", file=sys.stderr) as bar:
        def writing(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()
        written = save_dataset(dataset, args.target, args.target_format, progress=writing, **options)

    count = sum(len(r.instances) for r in dataset.images)
    print(f"{len(dataset.images)} images, {count} instances, {len(dataset.categories)} categories -> "
          f"{args.target} ({len(written)} files)")
    for path, message in errors or []:
        print(f"skipped: {message}", file=sys.stderr)
    return 1 if errors else 0
