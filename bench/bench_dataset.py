"""Dataset refinement benchmark: serial, pipelined and Ray (local, 2 CPU actors) in one run.

Run from the repository root (Ray from the ``ray`` extra; without it the Ray row is skipped)::

    python bench/bench_dataset.py                 # 50 coco_mval photographs, then peak RSS 50 vs 200
    python bench/bench_dataset.py --images 20 --no-rss
    python bench/bench_dataset.py --images 5000 --no-rss     # as many images as COCO val
    python bench/bench_dataset.py --data street --no-rss     # 50 Cityscapes-sized scenes

Data: the first ``--images`` photographs of shared/data/coco_mval (about 640 px on the long side;
past its 722 they repeat, as new images of the same files), or with ``--data street`` as many
synthetic 2048x1024 scenes (bench_engine's, about 140 patches each, written as PNG), with simulated
Mask R-CNN coarse masks (``bpr-studio simulate``), the default weights and the default
RefinerConfig (the weights' input size, NMS 0.25, min size 96, mirror on unless ``--mirror no``,
edge snap 2 px unless ``--snap``).
Each engine refines the whole set in this process (model loading and ONNX export included, as a
user's run has them; for Ray the actors' start, not ``ray.init``); the table gives images/s,
patches/s, the ratio to serial, the time to the first finished image, images/s after it (the rate
once an engine is up), the CPU cores this process kept busy (its CPU time over the wall time; Ray's
actors are other processes, not counted), and whether the output file is byte-identical to the
serial run's. Peak RSS: ``bpr-studio refine`` (pipelined) on 50 and on 200 images, each in its own
process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bpr_studio.cli import switch  # noqa: E402
from bpr_studio.core.config import RefinerConfig  # noqa: E402
from bpr_studio.io.coco import write_coco  # noqa: E402
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance  # noqa: E402
from bpr_studio.pipeline.job import read_job  # noqa: E402
from bpr_studio.pipeline.refine import refine_dataset  # noqa: E402
from bpr_studio.pipeline.work import RefinerSettings  # noqa: E402

COCO_MVAL = Path(os.environ.get("BPR_SHARED_DATA") or ROOT.parent / "shared" / "data") / "coco_mval"


def make_dataset(folder: Path, n: int) -> tuple[Path, Path, Path]:
    """The first n coco_mval images and their annotations, and simulated predictions; past the last
    photograph, the photographs again as new images (new ids). The images are links in
    ``folder/images`` named "ROUND_NAME" (0 for the first round). Returns (images folder,
    annotations, predictions)."""
    data = json.loads((COCO_MVAL / "annotations.json").read_text())
    photos, images, annotations = data["images"], [], []
    by_image = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    top_image = max(im["id"] for im in photos) + 1
    top_annotation = max(a["id"] for a in data["annotations"]) + 1
    links = folder / "images"
    links.mkdir(exist_ok=True)
    for i in range(n):
        round_, photo = divmod(i, len(photos))
        name = photos[photo]["file_name"]
        image = dict(photos[photo], id=photos[photo]["id"] + round_ * top_image,
                     file_name=f"{round_}_{Path(name).name}")
        if not (links / image["file_name"]).exists():
            (links / image["file_name"]).symlink_to(COCO_MVAL / name)
        images.append(image)
        annotations += [dict(a, id=a["id"] + round_ * top_annotation, image_id=image["id"])
                        for a in by_image.get(photos[photo]["id"], [])]
    gt = folder / f"gt{n}.json"
    gt.write_text(json.dumps(dict(data, images=images, annotations=annotations)))
    return links, gt, simulated_predictions(gt, links, folder / f"pred{n}.json")


def make_street_dataset(folder: Path, n: int) -> tuple[Path, Path, Path]:
    """n street-sized scenes (2048x1024 PNG, Cityscapes' size) in ``folder/street``: scene i is
    bench_engine's ``synthetic_scene(seed=i)``, 20 smooth blobs, about 140 boundary patches; its masks
    are the ground truth, and predictions are simulated from them. Scenes already written are kept.
    Returns (the folder the annotations' file names are relative to, annotations, predictions)."""
    from bench_engine import synthetic_scene

    scenes = folder / "street"
    scenes.mkdir(exist_ok=True)
    records = []
    for i in range(n):
        path = scenes / f"scene_{i:05d}.png"
        image, masks = synthetic_scene(seed=i)
        if not path.exists():
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        records.append(ImageRecord(path, image.shape[1], image.shape[0],
                                   [Instance.from_mask(m, 1) for m in masks if m.any()], image_id=i + 1))
    annotations = write_coco(Dataset(records, {1: "blob"}), folder / f"gt{n}.json")
    return folder, annotations, simulated_predictions(annotations, folder, folder / f"pred{n}.json")


def simulated_predictions(annotations: Path, images: Path, out: Path) -> Path:
    """Write Mask R-CNN-like predictions simulated from the ground truth ``annotations`` (whose file
    names are relative to ``images``) with ``bpr-studio simulate`` to ``out``; returns ``out``."""
    subprocess.run([sys.executable, "-m", "bpr_studio", "simulate", "--annotations", str(annotations),
                    "--images", str(images), "--out", str(out)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


DATASETS = {"coco": make_dataset, "street": make_street_dataset}


def peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory (MB) of a child process running ``python -m bpr_studio ARGS``."""
    proc = subprocess.Popen([sys.executable, "-m", "bpr_studio"] + args, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"refine failed with status {status}: {args}")
    return usage.ru_maxrss / 1024


def speed_table(tmp: Path, args: argparse.Namespace) -> None:
    """Every engine on the first ``args.images`` photographs, one after another; prints the table."""
    images, annotations, predictions = DATASETS[args.data](tmp, args.images)
    job = read_job(images, predictions, annotations)
    settings = RefinerSettings(device="cpu", config=RefinerConfig(mirror=args.mirror, snap=args.snap))
    instances = sum(len(t.rles) for t in job.tasks)
    print(f"{len(job.tasks)} images, {instances} instances; torch threads {__import__('torch').get_num_threads()}, "
          f"{os.cpu_count()} CPUs; settings: {settings.config.changed() or 'the defaults'}")
    runs = {"serial": ("serial", "serial", {}), "pipelined1": ("pipelined, 1 refiner", "pipelined", {"workers": 1}),
            "pipelinedN": (f"pipelined, {args.workers} refiners", "pipelined", {"workers": args.workers}),
            "ray": (f"Ray local, {args.workers} CPU actors", "ray", {"workers": args.workers})}
    runs = [runs[name] for name in args.engines.split(",")]
    try:
        from bpr_studio.pipeline.ray_engine import init_local_ray

        import ray  # noqa: F401
    except ImportError:
        print("ray not installed: no Ray row")
        runs = [r for r in runs if r[1] != "ray"]
    rows, reference = [], None
    for name, engine, options in runs:
        if engine == "ray":
            init_local_ray(num_cpus=args.workers, log_to_driver=False)
        out = tmp / f"{engine}{options.get('workers', '')}.json"
        start, cpu = time.perf_counter(), time.process_time()
        summary = refine_dataset(job, out, settings, engine=engine, **options)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if engine == "ray":
            ray.shutdown()
        data = out.read_bytes()
        reference = reference or data
        steady = (len(job.tasks) - 1) / max(seconds - summary.first_result_s, 1e-9)
        rows.append((name, len(job.tasks) / seconds, summary.patches / seconds, summary.first_result_s, steady,
                     None if engine == "ray" else cpu / seconds, data == reference, len(summary.failed)))
        print(f"  {name}: {seconds:.1f} s", flush=True)
    base_name, base = next(((r[0], r[1]) for r in rows if r[0] == "serial"), rows[0][:2])
    print(f"\n{summary.patches} patches\n")
    print(f"| engine | images/s | patches/s | vs {base_name} | first result | images/s after it | cores busy | "
          f"same file as {rows[0][0]} |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, ips, pps, first, steady, cores, same, failed in rows:
        print(f"| {name} | {ips:.2f} | {pps:.1f} | {ips / base:.2f}x | {first:.1f} s | {steady:.2f} | "
              f"{'-' if cores is None else f'{cores:.2f}'} | {'yes' if same else 'NO'}"
              f"{f' ({failed} failed)' if failed else ''} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50,
                        help="images for the speed table (default 50; past coco_mval's 722 its photographs repeat)")
    parser.add_argument("--data", choices=sorted(DATASETS), default="coco",
                        help="coco: coco_mval photographs (default); street: synthetic 2048x1024 scenes, "
                             "Cityscapes' size, about 140 patches each")
    parser.add_argument("--workers", type=int, default=2, help="pipelined refiners and Ray actors (default 2)")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS runs (50 and 200 images)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table")
    parser.add_argument("--engines", default="serial,pipelined1,pipelinedN,ray",
                        help="rows of the speed table (default serial,pipelined1,pipelinedN,ray; serial is the base)")
    parser.add_argument("--rss-input-size", type=int, default=None,
                        help="network input side of the RSS runs (default: the weights'; 32 makes them quick)")
    parser.add_argument("--mirror", type=switch, default=RefinerConfig.mirror, metavar="yes|no",
                        help="RefinerConfig.mirror of every run (default: the Refiner's, yes)")
    parser.add_argument("--snap", type=int, default=RefinerConfig.snap,
                        help=f"RefinerConfig.snap of every run in px, 0: off (default: the Refiner's, "
                             f"{RefinerConfig.snap})")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.no_speed:
            speed_table(tmp, args)
        if not args.no_rss:
            print()
            for n in (50, 200):
                images, gt, pred = DATASETS[args.data](tmp, n)
                rss = peak_rss_mb(["refine", "--images", str(images), "--annotations", str(gt),
                                   "--predictions", str(pred), "--out", str(tmp / f"rss{n}.json"),
                                   "--device", "cpu"]
                                  + (["--input-size", str(args.rss_input_size)] if args.rss_input_size else [])
                                  + ["--mirror", "yes" if args.mirror else "no", "--snap", str(args.snap)])
                print(f"peak RSS, pipelined refine of {n} images"
                      f"{f' at input {args.rss_input_size}' if args.rss_input_size else ''}: {rss:.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
