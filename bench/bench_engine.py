"""Engine benchmark: patch extraction and reassembly against the reference's approach, and network speed.

Run from the repository root::

    python bench/bench_engine.py            # full run (a few minutes on one core)
    python bench/bench_engine.py --quick    # fewer repeats and patches
    python bench/bench_engine.py --sizes 128 --extra-modes channels_last bf16 compile
                                            # also other CPU modes (bf16 and compile are slow)
    python bench/bench_engine.py --end-to-end [--threads 2]    # (d), (e), (f) only
    python bench/bench_engine.py --alone [--threads 2]         # (h) only: each path in its own process
    python bench/bench_engine.py --cuda                         # (g) only, on a CUDA GPU
    python bench/bench_engine.py --eval GT.json PRED.json ...  # quality, plain vs fast path

Everything runs on one thread (torch and OpenCV). On a synthetic 1024x2048 image with about 20
instances (smooth random blobs of varied sizes), it times, in the same run, median of ``--repeats``:

(a) extraction: boundary map, boxes, NMS and image + mask crops at patch resolution, for every
    instance; bpr_studio.core.patches against bench/reference_port.py (the reference's full-image
    boundary map and dense boxes over the full image);
(b) reassembly of every instance's patch probabilities: ours (work confined to the union of the
    boxes) against the reference's full-image sum and count maps;
(c) the hr18s network's patches/s at input 64/128/256 (batch 32) in eager PyTorch and in the mode
    ``fast_inference`` picks without calibration inputs (float32 ONNX Runtime; and any
    ``--extra-modes``), with the share of output mask pixels on which each mode disagrees with eager.

``--end-to-end`` (on ``--threads`` threads), each against the plain fp32 PyTorch ``Refiner(fast=False)``
in the same run: (d) image in, masks out with ``Refiner.refine`` (all instances, ``min_size`` 0,
the other settings the defaults, ``mirror`` among them; also the fast path without ``mirror``), the
time per stage and the mask pixels on which the two differ; (e) re-refining each instance alone
(median, p90); (f) making a Refiner until the first refined instance, with an empty and with a
filled model cache. ``--cuda``: (g) the same image on a
CUDA GPU, the fast path (float16 autocast) and eager fp32 at several batch sizes, each against the
plain fp32 CPU path in the same run, with the pixels on which they differ. ``--alone``: (h) the
image of (d) refined by each path alone in a fresh process (median of 9 calls), plain and fast
taking turns for ``--repeats`` rounds: in (d) the plain path shares its process with the fast
refiners, and its time moves with what ran there before (docs/engine_bench.md, stop 24). ``--eval``
refines COCO predictions files with both paths and prints AP / AF / mIoU side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bpr_studio
import reference_port  # noqa: E402

from bpr_studio.core import patches as ours  # noqa: E402
from bpr_studio.core.config import RefinerConfig, weights_path  # noqa: E402
from bpr_studio.core.inference import fast_inference  # noqa: E402
from bpr_studio.core.model import build_model, load_weights  # noqa: E402

HEIGHT, WIDTH = 1024, 2048
# Pause before each timed end-to-end call: torch's OpenMP threads busy-wait for some milliseconds after
# each parallel operation, so a fast-path run timed right after a plain one would lose a core to them.
SETTLE_S = 0.05


def synthetic_scene(n_instances: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A street-sized test scene: image (H, W, 3) uint8 RGB and masks (N, H, W) bool.

    Each instance is a smooth random blob: an ellipse whose radius varies with a few low
    harmonics, mean radius log-normal around 48 px (seed 0: about 17 to 104 px).
    """
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (HEIGHT // 64, WIDTH // 64, 3)).astype(np.float32)
    image = cv2.resize(low, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    masks = np.zeros((n_instances, HEIGHT, WIDTH), bool)
    for k, radius in enumerate(rng.lognormal(np.log(48), 0.6, n_instances)):
        cx, cy, aspect = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(0.6, 1.4)
        r = radius * (1 + sum(rng.uniform(0, 0.25 / h) * np.cos(h * angles + rng.uniform(0, 2 * np.pi))
                              for h in range(2, 6)))
        points = np.stack([cx + r * np.cos(angles), cy + aspect * r * np.sin(angles)], axis=1)
        canvas = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
        masks[k] = canvas > 0
        image[masks[k]] = 0.5 * image[masks[k]] + 0.5 * rng.uniform(0, 255, 3)
    image += rng.normal(0, 8, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), masks


def patch_probabilities_like_a_network(mask_crops: np.ndarray, seed: int = 0) -> np.ndarray:
    """(K, P, P) bool crops -> (K, P, P) float32 foreground probabilities: blurred, noisy masks."""
    rng = np.random.default_rng(seed)
    probs = np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), 2.0) for m in mask_crops])
    return np.clip(probs + rng.normal(0, 0.1, probs.shape).astype(np.float32), 0, 1)


def median_seconds(fns: list, repeats: int, settle: float = 0.0) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each ``fn()``, medians over ``repeats`` rounds after one warm-up call each.

    The functions take turns within every round, so on a shared, noisy machine they see the same
    load and their ratios stay meaningful; the CPU time (this process) leaves out the waits for a
    core that other programs hold. settle: seconds to sleep before each timed call (see SETTLE_S).
    """
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            time.sleep(settle)
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            spent.append((time.perf_counter() - wall, time.process_time() - cpu))
    return [(statistics.median(w for w, _ in spent), statistics.median(c for _, c in spent)) for spent in times]


def extract_ours(image, masks, patch_size, nms_thr):
    out = []
    for mask in masks:
        boxes = ours.boundary_patches(mask, patch_size, nms_thr)
        out.append((boxes, ours.crop_boxes(image, boxes), ours.crop_boxes(mask, boxes)))
    return out


def extract_reference(image, masks, patch_size, nms_thr):
    return [reference_port.extract(image, mask, patch_size, nms_thr) for mask in masks]


def bench_engine(image, masks, args) -> dict:
    """Time (a) extraction and (b) reassembly; returns the figures in milliseconds."""
    mine = extract_ours(image, masks, args.patch_size, args.nms_thr)
    theirs = extract_reference(image, masks, args.patch_size, args.nms_thr)
    probs = [patch_probabilities_like_a_network(crops) for _, _, crops in mine]
    boxes = [b for b, _, _ in mine]

    def reassemble_ours():
        return [ours.reassemble(m, b, p) for m, b, p in zip(masks, boxes, probs)]

    def reassemble_reference():
        return [reference_port.reassemble(m, b, p) for m, b, p in zip(masks, boxes, probs)]

    def copy_masks():  # the least any (H, W) result per instance costs: one full-size copy each
        return [m.copy() for m in masks]

    differ = sum(int((a != b).sum()) for a, b in zip(reassemble_ours(), reassemble_reference()))
    extract = median_seconds([lambda: extract_ours(image, masks, args.patch_size, args.nms_thr),
                              lambda: extract_reference(image, masks, args.patch_size, args.nms_thr)],
                             args.repeats)
    reassemble = median_seconds([reassemble_ours, reassemble_reference, copy_masks], args.repeats)
    return {
        "patches_ours": sum(len(b) for b in boxes),
        "patches_reference": sum(len(b) for b, _, _ in theirs),
        "reassembly_pixels_differ": differ,
        "extract_ours": extract[0], "extract_reference": extract[1],
        "reassemble_ours": reassemble[0], "reassemble_reference": reassemble[1], "copy_masks": reassemble[2],
    }


def extra_mode(name: str, model: torch.nn.Module):
    """A callable x (B, 4, S, S) -> logits for another CPU mode than the one fast_inference picks."""
    if name == "compile":
        return torch.compile(model, dynamic=False)
    if name == "bf16":
        def bf16(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x).float()
        return bf16
    return fast_inference(model, "cpu", mode=name)


def run_batches(fn, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Logits (K, 2, S, S) of ``fn`` over x (K, 4, S, S) in batches of ``batch``."""
    with torch.inference_mode():
        return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


def bench_network(image, masks, args) -> list[dict]:
    """(c) patches/s of eager PyTorch and the fast mode (and torch.compile if asked) per input size."""
    if args.weights:
        model, _ = load_weights(args.weights)
    else:
        torch.manual_seed(0)
        model = build_model("hr18s").eval()
    image_crops, mask_crops = [], []
    for mask in masks:
        boxes = ours.boundary_patches(mask, args.patch_size, args.nms_thr)
        image_crops.append(ours.crop_boxes(image, boxes))
        mask_crops.append(ours.crop_boxes(mask, boxes))
    image_crops = np.concatenate(image_crops)[:args.net_patches]
    mask_crops = np.concatenate(mask_crops)[:args.net_patches]
    rows = []
    for size in args.sizes:
        x = ours.network_inputs(image_crops, mask_crops, size)
        eager_out = run_batches(model, x, args.batch)
        fast = fast_inference(model, "cpu")
        modes = [(fast, None)] + [(extra_mode(name, model), name) for name in args.extra_modes]
        outs, setups = [], []
        for fn, _ in modes:
            start = time.perf_counter()
            outs.append(run_batches(fn, x, args.batch))  # first call: export / compile
            setups.append(time.perf_counter() - start)
        seconds = median_seconds([lambda: run_batches(model, x, args.batch)]
                                 + [lambda fn=fn: run_batches(fn, x, args.batch) for fn, _ in modes],
                                 args.net_repeats)
        for (fn, label), out, setup_s, spent in zip(modes, outs, setups, seconds[1:]):
            rows.append({
                "size": size, "mode": label or fast.mode, "eager": len(x) / seconds[0][0], "fast": len(x) / spent[0],
                "setup_s": setup_s, "mask_differ": int((out.argmax(1) != eager_out.argmax(1)).sum()),
                "mask_pixels": out[:, 0].numel(),
            })
    return rows


def print_engine(fig: dict) -> None:
    print(f"\nSynthetic {WIDTH}x{HEIGHT} image: {fig['instances']} instances, {fig['patches_ours']} patches "
          f"(reference port: {fig['patches_reference']}) at patch 64, NMS {fig['nms_thr']}; one thread; "
          f"median of {fig['repeats']} runs")
    print(f"{'stage, ms (wall / CPU)':<22}{'ours':>16}{'reference':>18}{'speedup':>9}")
    total_ours, total_ref = (0.0, 0.0), (0.0, 0.0)
    for stage, key in (("(a) extraction", "extract"), ("(b) reassembly", "reassemble"), ("(a) + (b)", None)):
        if key:
            a, b = fig[f"{key}_ours"], fig[f"{key}_reference"]
            total_ours = (total_ours[0] + a[0], total_ours[1] + a[1])
            total_ref = (total_ref[0] + b[0], total_ref[1] + b[1])
        else:
            a, b = total_ours, total_ref
        print(f"{stage:<22}{1e3 * a[0]:>8.1f} /{1e3 * a[1]:>6.1f}{1e3 * b[0]:>9.0f} /{1e3 * b[1]:>7.0f}"
              f"{b[0] / a[0]:>8.0f}x")
    print(f"of (b): copying the {fig['instances']} coarse masks once each (the floor for full-size outputs): "
          f"{1e3 * fig['copy_masks'][0]:.1f} / {1e3 * fig['copy_masks'][1]:.1f} ms")
    print(f"reassembled masks, ours vs reference, same boxes and probabilities: "
          f"{fig['reassembly_pixels_differ']} pixels differ")


def print_network(rows: list[dict], n_patches: int, batch: int) -> None:
    print(f"\n(c) hr18s network on {n_patches} patches of the scene, batch {batch}, one thread")
    print(f"{'input':>6}  {'mode':<14}{'eager p/s':>10}{'mode p/s':>10}{'speedup':>9}{'setup s':>9}"
          f"  mask pixels differing from eager")
    for r in rows:
        print(f"{r['size']:>6}  {r['mode']:<14}{r['eager']:>10.1f}{r['fast']:>10.1f}"
              f"{r['fast'] / r['eager']:>8.2f}x{r['setup_s']:>9.1f}  {r['mask_differ']} of {r['mask_pixels']} "
              f"({100 * r['mask_differ'] / r['mask_pixels']:.4f}%)")


def stage_times(refiner, image, masks) -> dict:
    """Seconds per stage of one ``refiner.refine`` done step by step (same calls, same order)."""
    from bpr_studio.core.edges import snap_to_edges
    from bpr_studio.core.refiner import mean_of_mirrors, with_mirrors

    cfg, spent = refiner.config, {}
    time.sleep(SETTLE_S)

    def timed(key, fn):
        start = time.perf_counter()
        out = fn()
        spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
        return out

    boxes = timed("boxes (boundary, NMS)", lambda: [refiner.patches(m) for m in masks])
    add_mirrors, average_mirrors = (with_mirrors, mean_of_mirrors) if cfg.mirror else (lambda x: x,) * 2
    all_boxes = np.concatenate(boxes)
    image_crops = timed("crops", lambda: ours.crop_boxes(image, all_boxes))
    mask_crops = timed("crops", lambda: np.concatenate([ours.crop_boxes(m, b) for m, b in zip(masks, boxes) if len(b)]))
    probs = []
    for start in range(0, len(all_boxes), cfg.batch_size):
        stop = start + cfg.batch_size
        x = timed("inputs (resize, normalise, mirror)", lambda: add_mirrors(ours.network_inputs(
            image_crops[start:stop], mask_crops[start:stop], cfg.input_size, **refiner._norm)))
        with torch.inference_mode():
            logits = timed("network", lambda: refiner._forward(x))
        fg = timed("softmax, resize back", lambda: ours.foreground_probability(average_mirrors(logits)))
        if cfg.snap:  # as Refiner._patch_probabilities: at crop resolution, before the padding is cut
            fg = timed("edge snap", lambda: snap_to_edges(
                image_crops[start:stop], ours.patch_probabilities(fg, image_crops.shape[1]), cfg.snap))
        probs.append(timed("softmax, resize back", lambda: ours.patch_probabilities(fg, cfg.patch_size, cfg.padding)))
    probs = np.concatenate(probs)
    ends = np.cumsum([len(b) for b in boxes])
    timed("reassembly", lambda: [ours.reassemble(m, b, probs[e - len(b):e], attached_only=cfg.attached_only,
                                                    margin=cfg.margin, max_shift=cfg.max_shift)
                                 for m, b, e in zip(masks, boxes, ends)])
    return spent


def bench_end_to_end(image, masks, args) -> dict:
    """Image in, masks out: the plain fp32 PyTorch Refiner against the fast one, same process, taking turns."""
    from bpr_studio.core.refiner import Refiner

    config = RefinerConfig(min_size=0, batch_size=args.batch)
    plain = Refiner(config, weights=args.weights, device="cpu", fast=False)
    fast = Refiner(config, weights=args.weights, device="cpu")
    fast._forward.prepare()
    unmirrored = Refiner(dataclasses.replace(config, mirror=False), weights=args.weights, device="cpu")
    plain_out = [r.mask for r in plain.refine(image, masks)]
    fast_out = [r.mask for r in fast.refine(image, masks)]
    changed = sum(int((p != m).sum()) for p, m in zip(plain_out, masks))
    differ = sum(int((p != f).sum()) for p, f in zip(plain_out, fast_out))
    (plain_s, _), (fast_s, _), (unmirrored_s, _) = median_seconds(
        [lambda: plain.refine(image, masks), lambda: fast.refine(image, masks), lambda: unmirrored.refine(image, masks)],
        args.repeats, settle=SETTLE_S)
    one_plain, one_fast, counts = [], [], []
    for i in range(len(masks)):  # re-refine one instance (an edit in the window)
        one = masks[i:i + 1]
        counts.append(len(fast.patches(one[0])))
        for refiner, spent in ((plain, one_plain), (fast, one_fast)):
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            refiner.refine(image, one)
            spent.append(time.perf_counter() - start)
    return {"patches": sum(len(plain.patches(m)) for m in masks), "mode": fast._forward.mode,
            "input_size": fast.config.input_size, "patch_size": fast.config.patch_size,
            "plain_s": plain_s, "fast_s": fast_s, "unmirrored_s": unmirrored_s, "mirror": fast.config.mirror,
            "pixels_differ": differ, "pixels_changed": changed,
            "stages_plain": stage_times(plain, image, masks), "stages_fast": stage_times(fast, image, masks),
            "one_plain": one_plain, "one_fast": one_fast, "one_patches": counts}


def bench_start(image, masks, args) -> list[tuple[str, float]]:
    """Seconds from making a Refiner to the first refined instance: plain, fast with an empty model cache
    (export, int8 calibration), fast again with the cache filled (a second start)."""
    import os
    import tempfile

    from bpr_studio.core.refiner import Refiner

    config = RefinerConfig(min_size=0, batch_size=args.batch)
    one = masks[:1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bpr-studio-cache-") as folder:
        before = os.environ.get("BPR_STUDIO_CACHE")
        os.environ["BPR_STUDIO_CACHE"] = folder
        try:
            for label, fast in (("plain fp32 PyTorch", False), ("fast, empty cache (first start)", True),
                                ("fast, cache filled (second start)", True)):
                start = time.perf_counter()
                Refiner(config, weights=args.weights, device="cpu", fast=fast).refine(image, one)
                rows.append((label, time.perf_counter() - start))
        finally:
            if before is None:
                os.environ.pop("BPR_STUDIO_CACHE", None)
            else:
                os.environ["BPR_STUDIO_CACHE"] = before
    return rows


def time_alone(path: str, image, masks, args) -> float:
    """Median seconds of ``Refiner.refine`` of the scene by one path ("plain" fp32 PyTorch or "fast"),
    the only refiner of this process: 9 timed calls after one warm-up."""
    from bpr_studio.core.refiner import Refiner

    refiner = Refiner(RefinerConfig(min_size=0, batch_size=args.batch), weights=args.weights, device="cpu",
                      fast=path == "fast")
    (seconds, _), = median_seconds([lambda: refiner.refine(image, masks)], 9, settle=SETTLE_S)
    return seconds


def bench_alone(args) -> list[tuple[float, float]]:
    """(h) (plain, fast) seconds of each of ``args.repeats`` rounds, each path timed by ``time_alone``
    in a fresh process of this script (``--time-one``)."""
    common = ["--threads", str(args.threads), "--instances", str(args.instances), "--batch", str(args.batch)]
    common += ["--weights", args.weights] if args.weights else []
    rounds = []
    for _ in range(args.repeats):
        rounds.append(tuple(float(subprocess.run([sys.executable, __file__, "--time-one", path] + common, check=True,
                                                 capture_output=True, text=True).stdout.split()[-1])
                            for path in ("plain", "fast")))
    return rounds


def print_alone(rounds: list[tuple[float, float]], threads: int) -> None:
    print(f"\n(h) each path alone in a fresh process: {WIDTH}x{HEIGHT} image, default settings, {threads} threads, "
          f"median of 9 calls")
    print(f"{'round':>5}{'plain ms':>10}{'fast ms':>9}{'ratio':>7}")
    for k, (plain, fast) in enumerate(rounds, 1):
        print(f"{k:>5}{plain * 1e3:>10.0f}{fast * 1e3:>9.0f}{plain / fast:>6.2f}x")


def print_end_to_end(fig: dict, start_rows, threads: int) -> None:
    print(f"\n(d) end to end, image in, masks out: {WIDTH}x{HEIGHT}, {fig['patches']} patches, input "
          f"{fig['input_size']}, mirror {'on' if fig['mirror'] else 'off'}, {threads} threads; fast = {fig['mode']}")
    print(f"plain fp32 PyTorch {fig['plain_s'] * 1e3:8.0f} ms   fast {fig['fast_s'] * 1e3:6.0f} ms   "
          f"speedup {fig['plain_s'] / fig['fast_s']:.2f}x")
    print(f"fast with mirror off {fig['unmirrored_s'] * 1e3:6.0f} ms "
          f"({fig['unmirrored_s'] / fig['fast_s']:.2f}x fast)")
    patch_pixels = fig["patches"] * fig["patch_size"] ** 2
    print(f"mask pixels differing from plain: {fig['pixels_differ']} ({fig['pixels_differ'] / patch_pixels:.3%} of the "
          f"{patch_pixels} patch pixels; plain refinement changed {fig['pixels_changed']} pixels of the coarse masks)")
    print(f"{'stage, ms':<36}{'plain':>9}{'fast':>9}")
    total = [sum(fig['stages_plain'].values()), sum(fig['stages_fast'].values())]
    for key in fig["stages_plain"]:
        a, b = fig["stages_plain"][key], fig["stages_fast"][key]
        print(f"{key:<36}{a * 1e3:>9.1f}{b * 1e3:>9.1f}   ({100 * b / total[1]:.0f}% of fast)")
    print(f"{'total':<36}{total[0] * 1e3:>9.1f}{total[1] * 1e3:>9.1f}")
    p = np.array(fig["one_patches"])
    print(f"\n(e) re-refine one instance ({len(p)} instances, patches median {np.median(p):.0f}, max {p.max()}): "
          f"ms median / p90")
    for label, key in (("plain", "one_plain"), ("fast", "one_fast")):
        t = 1e3 * np.array(fig[key])
        print(f"  {label:<6}{np.median(t):8.1f} /{np.percentile(t, 90):7.1f}")
    print("\n(f) start: making a Refiner until the first instance is refined")
    for label, seconds in start_rows:
        print(f"  {label:<36}{seconds:7.2f} s")


def bench_cuda(image, masks, args) -> dict:
    """(g) The Refiner on CUDA, the fast path (autocast-fp16) and eager fp32, at several batch sizes,
    against the plain fp32 PyTorch path on the CPU (``--threads`` threads) in the same run."""
    from bpr_studio.core.refiner import Refiner

    def config(batch):
        return RefinerConfig(min_size=0, batch_size=batch)

    plain = Refiner(config(args.batch), weights=args.weights, device="cpu", fast=False)
    reference = [r.mask for r in plain.refine(image, masks)]
    (plain_s, _), = median_seconds([lambda: plain.refine(image, masks)], args.repeats, settle=SETTLE_S)
    rows = []
    for batch in args.cuda_batches:
        for fast in (True, False):
            refiner = Refiner(config(batch), weights=args.weights, device="cuda", fast=fast)
            out = [r.mask for r in refiner.refine(image, masks)]  # also the warm-up (cuDNN autotuning, ...)
            torch.cuda.synchronize()
            (seconds, _), = median_seconds([lambda: refiner.refine(image, masks)], args.repeats)
            rows.append({"batch": batch, "mode": refiner._forward.mode if fast else "eager fp32", "s": seconds,
                         "differ": sum(int((a != b).sum()) for a, b in zip(reference, out)),
                         "stages": stage_times(refiner, image, masks) if fast and batch == max(args.cuda_batches)
                         else None})
    return {"device": torch.cuda.get_device_name(), "plain_s": plain_s, "rows": rows,
            "patches": sum(len(plain.patches(m)) for m in masks), "patch_size": plain.config.patch_size,
            "input_size": plain.config.input_size}


def print_cuda(fig: dict, threads: int) -> None:
    patch_pixels = fig["patches"] * fig["patch_size"] ** 2
    print(f"\n(g) CUDA ({fig['device']}), image in, masks out: {WIDTH}x{HEIGHT}, {fig['patches']} patches, input "
          f"{fig['input_size']}; against plain fp32 PyTorch on the CPU ({threads} threads): "
          f"{fig['plain_s'] * 1e3:.0f} ms")
    print(f"{'batch':>6}  {'mode':<14}{'ms':>8}{'vs CPU plain':>14}  mask pixels differing from CPU plain")
    for r in fig["rows"]:
        print(f"{r['batch']:>6}  {r['mode']:<14}{r['s'] * 1e3:>8.1f}{fig['plain_s'] / r['s']:>13.1f}x  "
              f"{r['differ']} ({r['differ'] / patch_pixels:.3%} of the patch pixels)")
    for r in fig["rows"]:
        if r["stages"]:
            print(f"stages of {r['mode']} at batch {r['batch']}, ms: " + ", ".join(
                f"{key} {value * 1e3:.1f}" for key, value in r["stages"].items()))


def refine_with(refiner, ground_truth, predictions):
    """predictions refined by ``refiner`` (a Dataset) and the refined masks, image by image."""
    from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
    from bpr_studio.io.images import read_image

    images, masks = [], []
    for g, p in zip(ground_truth.images, predictions.images):
        out = []
        if p.instances:
            refined = refiner.refine(read_image(g.path, (g.width, g.height)), p.masks())
            masks.extend(r.mask for r in refined)
            out = [Instance.from_mask(r.mask, inst.category_id, score=inst.score)
                   for r, inst in zip(refined, p.instances)]
        images.append(ImageRecord(path=p.path, width=p.width, height=p.height, instances=out, image_id=p.image_id))
    return Dataset(images=images, categories=dict(predictions.categories)), masks


def bench_eval(annotations: str, predictions: list[str], weights: str | None,
               margin: float = RefinerConfig.margin) -> list[dict]:
    """AP / AF / mIoU of each predictions file refined by the plain and the fast path (RefinerConfig's
    defaults but ``margin``), and the share of refined-mask pixels (inside the instances' refined
    patches' union) on which the two paths differ."""
    from bpr_studio.pipeline.datasets import score_table
    from bpr_studio.core.refiner import Refiner
    from bpr_studio.io.coco import read_coco, read_coco_results

    ground_truth = read_coco(annotations)
    config = RefinerConfig(margin=margin)
    plain = Refiner(config, weights=weights, device="cpu", fast=False)
    fast = Refiner(config, weights=weights, device="cpu")
    rows = []
    for path in predictions:
        coarse = read_coco_results(path, ground_truth)
        (plain_set, plain_masks), (fast_set, fast_masks) = (refine_with(r, ground_truth, coarse) for r in (plain, fast))
        table = score_table(ground_truth, [("coarse", coarse), ("plain", plain_set), ("fast", fast_set)])
        differ = sum(int((a != b).sum()) for a, b in zip(plain_masks, fast_masks))
        changed = sum(int((a != c).sum()) for a, c in zip(plain_masks, (m for p in coarse.images for m in
                                                                         (p.masks() if p.instances else []))))
        rows.append({"file": Path(path).name, "mode": fast._forward.mode,
                     **{f"{k}_{r['name']}": r[k] for r in table for k in ("ap", "af", "miou")},
                     "pixels_differ": differ, "pixels_refined": changed,
                     "mask_pixels": sum(int(m.size) for m in plain_masks)})
    return rows


def print_eval(rows: list[dict]) -> None:
    print(f"\nQuality, plain fp32 PyTorch vs fast path ({rows[0]['mode']}), AP / AF / mIoU in %")
    print(f"{'predictions':<18}{'coarse':>20}{'plain':>20}{'fast':>20}{'dAP':>6}{'dAF':>6}  mask pixels differing")
    for r in rows + ([_mean_row(rows)] if len(rows) > 1 else []):
        cells = "".join(f"{r[f'ap_{n}']:>8.1f}{r[f'af_{n}']:>6.1f}{r[f'miou_{n}']:>6.1f}"
                        for n in ("coarse", "plain", "fast"))
        print(f"{r['file']:<18}{cells}{r['ap_fast'] - r['ap_plain']:>+6.1f}{r['af_fast'] - r['af_plain']:>+6.1f}"
              f"  {r['pixels_differ']} ({r['pixels_differ'] / max(r['pixels_refined'], 1):.1%} of the "
              f"{r['pixels_refined']} pixels refinement changed)")


def _mean_row(rows: list[dict]) -> dict:
    mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0] if k not in ("file", "mode")}
    for k in ("pixels_differ", "pixels_refined", "mask_pixels"):
        mean[k] = sum(r[k] for r in rows)
    return {"file": "mean", **mean}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of (a) and (b) (median)")
    parser.add_argument("--net-repeats", type=int, default=3, help="timed runs of (c) (median)")
    parser.add_argument("--net-patches", type=int, default=64, help="patches pushed through the network")
    parser.add_argument("--batch", type=int, default=32, help="network batch size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="network input sizes")
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--patch-size", type=int, default=RefinerConfig.patch_size)
    parser.add_argument("--nms-thr", type=float, default=RefinerConfig.nms_thr)
    parser.add_argument("--weights", type=lambda text: str(weights_path(text)),
                        help="a weights file, or fast|precise|paper (the shipped ones), for (c) (default: randomly "
                             "initialised hr18s) and the other sections (default: the shipped default)")
    parser.add_argument("--extra-modes", nargs="*", default=[], choices=["channels_last", "bf16", "compile"],
                        help="also time these CPU modes in (c) (compile takes minutes, bf16 is very slow "
                             "without native bfloat16)")
    parser.add_argument("--skip-network", action="store_true", help="leave out (c)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="only (d) end to end, (e) one-instance re-refine and (f) start times, plain fp32 "
                             "PyTorch against the fast path, on --threads threads (shipped weights or --weights)")
    parser.add_argument("--threads", type=int, default=2, help="threads for --end-to-end (default 2)")
    parser.add_argument("--cuda", action="store_true",
                        help="only (g): the Refiner on CUDA (fast path and eager fp32) against plain fp32 on the CPU")
    parser.add_argument("--cuda-batches", type=int, nargs="+", default=[32, 128, 512],
                        help="RefinerConfig.batch_size values for --cuda (default 32 128 512)")
    parser.add_argument("--eval", nargs="+", metavar=("GT", "PRED"),
                        help="only the quality check: COCO ground truth, then predictions files, refined by the "
                             "plain and the fast path (shipped weights or --weights)")
    parser.add_argument("--margin", type=float, default=RefinerConfig.margin,
                        help="RefinerConfig.margin for --eval (default: its default)")
    parser.add_argument("--alone", action="store_true",
                        help="only (h): the image of (d) refined by each path alone in a fresh process, --repeats "
                             "rounds taking turns, on --threads threads")
    parser.add_argument("--time-one", choices=("plain", "fast"), help=argparse.SUPPRESS)  # one path of (h)
    parser.add_argument("--quick", action="store_true", help="2 repeats, 32 patches, 1 network repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.net_repeats, args.net_patches = 2, 1, 32
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.eval:
        print_eval(bench_eval(args.eval[0], args.eval[1:], args.weights, args.margin))
        return 0
    image, masks = synthetic_scene(args.instances)
    if args.cuda:
        if not torch.cuda.is_available():
            print("--cuda: CUDA is not available on this machine", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        print_cuda(bench_cuda(image, masks, args), args.threads)
        return 0
    if args.time_one:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        print(time_alone(args.time_one, image, masks, args))
        return 0
    if args.alone:
        print_alone(bench_alone(args), args.threads)
        return 0
    if args.end_to_end:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
        fig = bench_end_to_end(image, masks, args)
        print_end_to_end(fig, bench_start(image, masks, args), args.threads)
        return 0
    fig = bench_engine(image, masks, args)
    fig.update(instances=len(masks), nms_thr=args.nms_thr, repeats=args.repeats)
    print_engine(fig)
    if not args.skip_network:
        print_network(bench_network(image, masks, args), min(args.net_patches, fig["patches_ours"]), args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
