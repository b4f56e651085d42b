"""``bpr-studio synth``: a synthetic COCO dataset (images, exact masks, simulated coarse predictions)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write images/, annotations.json, predictions.json")
    parser.add_argument("--images", type=int, required=True, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="scene seed: scene i uses [seed, i] (default 0)")
    parser.add_argument("--parts", type=float, default=0.5,
                        help="probability that an object gets inner parts of another appearance "
                             "(default 0.5; 0 reproduces sets made before this option)")
    parser.add_argument("--prediction-seed", type=int, default=0,
                        help="seed of the simulated predictions (default 0; see bpr-studio simulate)")


def write_scenes(out_dir: str | Path, count: int, seed: int = 0, progress: bool = False, parts: float = 0.5):
    """Write ``count`` scenes as ``out_dir/images/NNNNNN.png``; return them as a ground-truth Dataset.

    Scene ``i`` draws from ``numpy.random.default_rng([seed, i])``, so a set is reproducible and
    sets of different seeds do not overlap. Images are written losslessly (PNG) after the scene's
    own JPEG compression, so the files hold exactly the pixels the masks were made for. parts: see
    core.synth.make_scene.
    """
    import cv2
    import numpy as np
    from tqdm import tqdm

    from ..core.synth import CATEGORIES, make_scene
    from ..io.atomic import atomic_write_bytes
    from ..io.dataset import Dataset, ImageRecord, Instance

    images_dir = Path(out_dir) / "images"
    records = []
    for i in tqdm(range(count), desc="scenes", disable=not progress):
        image, masks, kinds = make_scene(np.random.default_rng([seed, i]), parts=parts)
        path = images_dir / f"{i:06d}.png"
        ok, data = cv2.imencode(".png", image[..., ::-1])
        atomic_write_bytes(path, data.tobytes())
        height, width = image.shape[:2]
        instances = [Instance.from_mask(m, k) for m, k in zip(masks, kinds)]
        records.append(ImageRecord(path=path, width=width, height=height, instances=instances, image_id=i + 1))
    return Dataset(images=records, categories=dict(CATEGORIES))


def run(args: argparse.Namespace) -> int:
    from ..io.coco import write_coco, write_coco_results
    from .simulate import simulate_dataset

    if args.images < 1:
        raise ValueError(f"--images must be at least 1, got {args.images}")
    out = Path(args.out)
    if not 0.0 <= args.parts <= 1.0:
        raise ValueError(f"--parts must be a probability in [0, 1], got {args.parts}")
    ground_truth = write_scenes(out, args.images, args.seed, progress=True, parts=args.parts)
    write_coco(ground_truth, out / "annotations.json")
    write_coco_results(simulate_dataset(ground_truth, args.prediction_seed), out / "predictions.json")
    count = sum(len(r.instances) for r in ground_truth.images)
    print(f"wrote {args.images} images with {count} instances to {out} "
          f"(annotations.json, predictions.json: simulated Mask R-CNN masks, seed {args.prediction_seed})")
    return 0
