"""Window responsiveness on a large image: open, select, brush strokes, undo, opacity, patches, snapshot.

Builds an 8000 x 6000 JPEG with 30 elliptic instances in a temporary folder, opens it offscreen in
the MainWindow and prints a table of wall-clock times (ms), then for 30 strokes made as the canvas
makes them (its strokeFinished signal, inside a running event loop) the stroke handler's time (edit,
undo step, journal line, overlay update) and the longest block of the event loop per stroke (a 1 ms
heartbeat timer's longest gap, the repaint and the background patch preview included); median and
max. Usage: python bench/gui_large_image.py [--strokes N] [--profile FILE] (cProfile of the strokes).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2
import numpy as np
from PyQt5 import QtWidgets

from bpr_studio.gui.main_window import MainWindow
from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
from bpr_studio.session import Session

HEIGHT, WIDTH, INSTANCES = 6000, 8000, 30


def build(folder: Path) -> Dataset:
    rng = np.random.default_rng(0)
    small = (rng.random((HEIGHT // 8, WIDTH // 8, 3)) * 255).astype(np.uint8)
    path = folder / "large.jpg"
    cv2.imwrite(str(path), cv2.resize(small, (WIDTH, HEIGHT)))
    instances = []
    for _ in range(INSTANCES):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        centre = (int(rng.integers(500, WIDTH - 500)), int(rng.integers(500, HEIGHT - 500)))
        axes = (int(rng.integers(100, 900)), int(rng.integers(100, 900)))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
        instances.append(Instance.from_mask(mask.astype(bool), 1))
    return Dataset([ImageRecord(path, WIDTH, HEIGHT, instances, 0)], {1: "blob"})


def stroke_blocks(app, window, dataset, count: int, settle_ms: int = 400) -> list[tuple[float, float]]:
    """(handler ms, longest event-loop block ms) of ``count`` strokes across instance 5's edge: brush,
    every third one an eraser. Each stroke is the canvas's strokeFinished signal, emitted from a
    running event loop as a mouse release emits it; a 1 ms heartbeat timer runs meanwhile and for
    ``settle_ms`` after (the repaint, the patch preview found in the background), and the longest
    gap between its beats is the longest time the event loop could not answer."""
    from PyQt5 import QtCore

    window.select_instance(5)
    window.set_tool("brush")
    window.brush_spin.setValue(12)
    app.processEvents()
    x, y, w, h = dataset.images[0].instances[5].bbox
    rng = np.random.default_rng(1)
    preview = getattr(window, "_patch_preview", None)
    results = []
    for k in range(count):
        erase = k % 3 == 2
        cx = x + w * rng.uniform(0.2, 0.8)
        top = rng.random() < 0.5
        cy = (y if top else y + h) + rng.uniform(-15, 15)
        stroke = np.array([[cx + 3 * i, cy + (i if top else -i) * 0.5] for i in range(40)], float)
        beats, handler = [], []
        loop = QtCore.QEventLoop()
        heartbeat = QtCore.QTimer(interval=1)
        heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))

        def do_stroke():
            start = time.perf_counter()
            window.canvas.strokeFinished.emit(stroke, erase)
            handler.append(time.perf_counter() - start)
            QtCore.QTimer.singleShot(settle_ms, finish)

        def finish():
            if preview is not None and (preview.busy or window._patch_timer.isActive()):
                QtCore.QTimer.singleShot(20, finish)  # the patch preview is not in yet
            else:
                loop.quit()

        heartbeat.start()
        QtCore.QTimer.singleShot(5, do_stroke)
        loop.exec_()
        heartbeat.stop()
        gaps = np.diff(beats) if len(beats) > 1 else np.zeros(1)
        results.append((1000 * handler[0], 1000 * float(gaps.max())))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=30)
    parser.add_argument("--profile", help="write a cProfile of the stroke loop to this file")
    args = parser.parse_args()
    app = QtWidgets.QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        dataset = build(Path(tmp))
        session = Session(dataset, Path(tmp) / "large.bprsession")
        window = MainWindow()
        window.resize(1400, 900)
        window.show()
        rows = []

        def timed(label, action, events=True):
            start = time.perf_counter()
            action()
            if events:
                app.processEvents()
            rows.append((label, 1000 * (time.perf_counter() - start)))

        timed("open the image (read, masks, overlay)", lambda: window.set_session(session), events=False)
        timed("first paint (and extension panels)", lambda: None)
        timed("select an instance", lambda: window.select_instance(3))
        timed("select another", lambda: window.select_instance(5))
        x, y, w, _ = dataset.images[0].instances[5].bbox
        stroke = np.array([[x + w / 2 + 3 * i, y - 5 + i] for i in range(40)], float)
        sizes = []
        for k in range(4):
            timed(f"brush stroke {k + 1}", lambda: session.paint(0, 5, stroke + [10 * k, 0], 12))
            sizes.append(session.store.journal_path.stat().st_size)
        timed("undo", lambda: session.undo(0))
        timed("opacity slider", lambda: window.view_controls.opacity.setValue(30))
        timed("hide an instance", lambda: window.set_instance_visible(7, False))
        timed("patch preview (selected instance)", lambda: window.view_controls.patches.setCurrentText("selected instance"))
        timed("snapshot (compaction)", session.save, events=False)
        window.view_controls.patches.setCurrentText("selected instance")
        if args.profile:
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        blocks = stroke_blocks(app, window, dataset, args.strokes)
        if args.profile:
            profiler.disable()
            profiler.dump_stats(args.profile)
        window.close()
    print(f"{WIDTH} x {HEIGHT} image, {INSTANCES} instances; journal bytes per stroke: "
          f"{', '.join(str(b - a) for a, b in zip([0] + sizes[:-1], sizes))} (the first holds the whole touched instance)")
    print(f"{'operation':42s} {'ms':>8s}")
    for label, ms in rows:
        print(f"{label:42s} {ms:8.0f}")
    handler = np.array([b[0] for b in blocks])
    longest = np.array([b[1] for b in blocks])
    print(f"{len(blocks)} strokes (radius 12, 40 points, every third erasing) on instance 5, ms:")
    print(f"{'':36s} {'median':>8s} {'max':>8s}")
    for label, values in (("stroke handler (edit + overlay)", handler),
                          ("longest event-loop block per stroke", longest)):
        print(f"{label:36s} {np.median(values):8.1f} {values.max():8.1f}")


if __name__ == "__main__":
    main()
