"""Window responsiveness on a large image: open, select, brush strokes, undo, opacity, patches, snapshot.

Builds an 8000 x 6000 JPEG with 30 elliptic instances in a temporary folder, opens it offscreen in
the MainWindow and prints a table of wall-clock times (ms). Usage: python bench/gui_large_image.py
"""

from __future__ import annotations

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


def main() -> None:
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
        window.close()
    print(f"{WIDTH} x {HEIGHT} image, {INSTANCES} instances; journal bytes per stroke: "
          f"{', '.join(str(b - a) for a, b in zip([0] + sizes[:-1], sizes))} (the first holds the whole touched instance)")
    print(f"{'operation':42s} {'ms':>8s}")
    for label, ms in rows:
        print(f"{label:42s} {ms:8.0f}")


if __name__ == "__main__":
    main()
