"""``bpr-studio refine``: refine every instance of a COCO results file and write the refined results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import add_refiner_arguments, add_weights_argument, refiner_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, required=True, help="folder of the images")
    parser.add_argument("--predictions", type=Path, required=True,
                        help="COCO results JSON: a list of {image_id, category_id, segmentation (RLE), score}")
    parser.add_argument("--annotations", type=Path,
                        help="COCO annotations JSON that lists the images (image_id -> file_name); "
                             "without it, images are matched by file name as docs/formats.md says")
    parser.add_argument("--out", type=Path, required=True, help="refined COCO results JSON to write")
    add_weights_argument(parser)
    add_refiner_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--engine", choices=("serial", "pipelined", "ray"), default="pipelined",
                        help="pipelined (default): threads decode and extract the next images while the network "
                             "runs; serial: one image after another; ray: Ray actors, one refiner each "
                             "(pip install 'bpr-studio[ray]')")
    parser.add_argument("--workers", type=int, default=None,
                        help="refiners side by side (pipelined: default one per GPU, on the CPU 2 sharing "
                             "its threads; ray: actors, default one per GPU, else one per CPU; CPU actors "
                             "split the cores)")
    parser.add_argument("--ray-address", default=None,
                        help="join this Ray cluster (HOST:PORT or 'auto', after `ray start`); default: a local Ray")
    parser.add_argument("--resume", action="store_true",
                        help="keep the images an interrupted run with the same inputs and settings finished")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.model import load_weights
    from ..core.refiner import pick_device
    from ..io.atomic import check_output_path
    from ..pipeline.job import problem_lines, read_job
    from ..pipeline.refine import fingerprint, refine_dataset
    from ..pipeline.work import RefinerSettings

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.ray_address and args.engine != "ray":
        raise ValueError("--ray-address needs --engine ray")
    check_output_path(args.out)
    config = refiner_config(args)
    weights = str(args.weights.absolute()) if args.weights else None
    settings = RefinerSettings(config, weights, args.device)
    if args.engine != "ray":
        settings.build()  # a bad weights file or device fails here, before any reading
    else:  # the actors build their own refiners; a bad file (or device, on a local Ray) fails here, in one line
        if weights:
            load_weights(weights)
        if not args.ray_address:
            pick_device(settings.device)
    job = read_job(args.images, args.predictions, args.annotations)
    prints = fingerprint(args.images, args.predictions, args.annotations, settings)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    with tqdm(total=len(job.tasks), unit="img", desc="refine", file=sys.stderr) as bar:
        patches = [0]

        def on_result(result) -> None:
            patches[0] += result.patches
            bar.update(1)
            elapsed = bar.format_dict["elapsed"]
            bar.set_postfix_str(f"{patches[0] / elapsed if elapsed else 0:.1f} patches/s", refresh=False)

        summary = refine_dataset(job, args.out, settings, engine=args.engine, workers=args.workers,
                                 resume=args.resume, ray_address=args.ray_address, fingerprint=prints,
                                 on_start=lambda todo: bar.reset(total=todo), on_result=on_result,
                                 log=lambda m: bar.write(m, file=sys.stderr))
    if summary.discarded:
        log(f"discarded {summary.discarded} images finished by an earlier run (--resume keeps them)")
    if summary.resumed:
        log(f"resumed: {summary.resumed} images were refined by an earlier run")
    if summary.out_written:
        log(f"wrote {summary.written} instances of {len(job.tasks)} images to {args.out}")
    else:
        log(f"nothing could be refined; {args.out} was not written")
    log(f"{summary.refined} images refined, {summary.patches} patches "
        f"({summary.run_patches} in {summary.seconds:.1f} s this run, {summary.patches_per_s:.1f} patches/s); "
        f"{summary.kept_small} instances kept their coarse mask for being smaller than --min-size {config.min_size} px")
    lines = problem_lines(job, summary.failed, summary.out_written)
    if lines:
        log(f"{len(lines)} image(s) with problems:")
        for line in lines:
            log(f"  {line}")
        return 1
    return 0
