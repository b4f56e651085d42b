"""The session model without a window: review, touch-up, undo/redo, autosave, crash recovery, export."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
from bpr_studio.session import MaskDiff, Session
from bpr_studio.session.store import SessionStore


def _dataset(tmp_path: Path, n_images: int = 2, size=(60, 80)) -> Dataset:
    """Images with two instances each: a disc and a ring with a hole (two parts in the second image)."""
    h, w = size
    images = []
    for k in range(n_images):
        path = tmp_path / f"img{k}.png"
        cv2.imwrite(str(path), np.full((h, w, 3), 40 * k, np.uint8))
        disc = np.zeros((h, w), np.uint8)
        cv2.circle(disc, (20, 20), 10, 1, -1)
        ring = np.zeros((h, w), np.uint8)
        cv2.circle(ring, (55, 35), 15, 1, -1)
        cv2.circle(ring, (55, 35), 6, 0, -1)
        if k == 1:
            cv2.rectangle(ring, (0, 50), (10, 59), 1, -1)
        insts = [Instance.from_mask(disc.astype(bool), 1, score=0.9), Instance.from_mask(ring.astype(bool), 2, score=0.5)]
        images.append(ImageRecord(path, w, h, insts, image_id=k))
    return Dataset(images, {1: "disc", 2: "ring"})


def test_mask_diff_roundtrip_is_exact():
    rng = np.random.default_rng(0)
    a = rng.random((40, 50)) > 0.5
    b = a.copy()
    b[10:20, 5:30] = rng.random((10, 25)) > 0.3
    diff = MaskDiff.between(a, b)
    assert diff.bbox[0] >= 5 and diff.bbox[2] <= 30 and diff.bbox[1] >= 10 and diff.bbox[3] <= 20
    c = a.copy()
    diff.apply(c)
    assert np.array_equal(c, b)
    again = MaskDiff.from_json(json.loads(json.dumps(diff.to_json())))
    again.apply(c)
    assert np.array_equal(c, a)
    assert MaskDiff.between(a, a) is None


def test_review_events_and_counts(tmp_path):
    session = Session(_dataset(tmp_path))
    seen = []
    session.events.changed.connect(lambda e: seen.append((e.kind, e.image, e.instance)))
    assert session.accept(0, 0)
    assert not session.accept(0, 0)
    session.reject(0, 1)
    assert ("status", 0, 0) in seen and ("status", 0, 1) in seen
    assert session.images[0].review_counts() == {"unreviewed": 0, "accepted": 1, "rejected": 1, "edited": 0}
    assert session.review_counts()["unreviewed"] == 2
    assert session.next_unreviewed(0, 1) == (1, 0)
    assert session.next_unreviewed(1, 0, step=-1) == (1, 1)  # wraps around backwards
    session.set_refined(1, 0, session.images[1].instances[0].coarse)
    assert session.accept_all_refined(1) == 1
    assert session.images[1].instances[1].status == "unreviewed"
    session.undo(1)
    assert session.images[1].instances[0].status == "unreviewed"


def test_brush_changes_only_the_stroke_and_undo_redo_are_exact(tmp_path):
    session = Session(_dataset(tmp_path))
    inst = session.images[1].instances[1]
    before = inst.final.copy()
    points = np.array([[70.0, 5.0], [90.0, 5.0]])  # runs past the right edge of the 80 px image
    assert session.paint(1, 1, points, radius=3)
    after = inst.final.copy()
    stroke = np.zeros_like(before, np.uint8)
    cv2.line(stroke, (70, 5), (90, 5), 1, 7)
    changed = before ^ after
    assert changed.any() and not (changed & ~stroke.astype(bool)).any()
    assert inst.status == "edited" and inst.changed_pixels == int(changed.sum())
    # the hole and the second part survive
    assert not after[35, 55] and after[55, 5]
    assert session.paint(1, 1, [[55.0, 20.0]], radius=2, erase=True)
    assert session.undo(1) and session.undo(1)
    assert np.array_equal(inst.final, before) and inst.status == "unreviewed" and not inst.has("edited")
    assert session.redo(1)
    assert np.array_equal(inst.final, after)
    assert session.redo(1) and not session.redo(1)
    assert not session.paint(1, 1, [[-50.0, -50.0]], radius=3)  # entirely outside: nothing happens


def test_strokes_keep_box_count_and_window_exact_and_undo_restores(tmp_path):
    """Random strokes, erasures, polygons, rejections, undo and redo: each "mask" event's window holds
    every pixel the final mask changed, the edited mask's crop (kept up to date stroke by stroke)
    is its tight box, the changed count is exact, and undoing everything restores every mask."""
    from bpr_studio.core.boundary import mask_bbox

    session = Session(_dataset(tmp_path, n_images=1))
    image = session.images[0]
    events = []
    session.events.changed.connect(lambda e: e.instance is not None and events.append(e))
    start = [inst.final.copy() for inst in image.instances]
    rng = np.random.default_rng(3)
    steps = 0
    for k in range(120):
        j = int(rng.integers(2))
        befores = [other.final.copy() for other in image.instances]
        events.clear()
        what = rng.random()
        if what < 0.07 and session.can_undo(0):
            session.undo(0)
            steps -= 1
        elif what < 0.12 and session.can_redo(0):
            session.redo(0)
            steps += 1
        elif what < 0.16:
            steps += session.reject(0, j)
        elif what < 0.22:
            steps += session.fill_polygon(0, j, rng.uniform(-5, 85, (4, 2)), subtract=bool(rng.integers(2)))
        else:
            points = rng.uniform(-5, 85, (int(rng.integers(1, 4)), 2))
            steps += session.paint(0, j, points, radius=float(rng.uniform(0.5, 6)), erase=bool(rng.random() < 0.5))
        for m, other in enumerate(image.instances):
            changed = befores[m] ^ other.final
            told = [e for e in events if e.instance == m]
            if changed.any():
                assert told, f"step {k}: instance {m} changed without an event"
                if all(e.kind == "mask" and e.window is not None for e in told):
                    outside = changed.copy()
                    for e in told:
                        x0, y0, x1, y1 = e.window
                        outside[y0:y1, x0:x1] = False
                    assert not outside.any(), f"step {k}: the final mask changed outside the event's window"
        for other in image.instances:
            if other.has("edited"):
                crop = other.crop("edited")
                box = mask_bbox(other.edited)
                assert (crop is None and box is None) or (crop[:2] == box[:2] and crop[2].shape ==
                                                           (box[3] - box[1], box[2] - box[0]))
                if crop is not None:
                    assert np.array_equal(crop[2], other.edited[box[1]:box[3], box[0]:box[2]])
            assert other.changed_pixels == int(np.count_nonzero(other.final ^ other.coarse)), f"step {k}"
    while session.undo(0):
        pass
    for inst, mask in zip(image.instances, start):
        assert np.array_equal(inst.final, mask) and inst.status == "unreviewed" and not inst.has("edited")


def test_a_stroke_event_carries_the_stroke_window(tmp_path):
    session = Session(_dataset(tmp_path, n_images=1))
    events = []
    session.events.changed.connect(events.append)
    inst = session.images[0].instances[0]
    before = inst.final.copy()
    assert session.paint(0, 0, [[25.0, 8.0], [40.0, 8.0]], radius=2)  # first stroke: creates the edit
    assert [(e.kind, e.instance, e.window) for e in events] == [("mask", 0, (23, 6, 43, 11)), ("history", None, None)]
    events.clear()
    assert session.paint(0, 0, [[20.0, 20.0]], radius=1, erase=True)
    assert events[0].window == (19, 19, 22, 22)
    events.clear()
    assert session.undo(0)
    assert events[0].kind == "mask" and events[0].window == (19, 19, 22, 22)
    events.clear()
    assert session.undo(0)
    assert events[0].kind == "mask" and events[0].window is None  # the edit is dropped: anywhere
    assert np.array_equal(inst.final, before)


def test_polygon_and_reject_keep_coarse(tmp_path):
    session = Session(_dataset(tmp_path))
    inst = session.images[0].instances[0]
    assert session.fill_polygon(0, 0, [[0, 40], [10, 40], [10, 50]])
    assert inst.final[45, 8]
    assert session.fill_polygon(0, 0, [[0, 40], [10, 40], [10, 50]], subtract=True)
    assert not inst.final[45, 8]
    session.reject(0, 0)
    assert np.array_equal(inst.final, inst.coarse)


def test_autosave_restores_after_reopen(tmp_path):
    data = _dataset(tmp_path)
    path = tmp_path / "s.bprsession"
    session = Session(data, path)
    session.accept(0, 0)
    refined = session.images[0].instances[1].coarse.copy()
    refined[0:5, 0:5] = True
    session.set_refined(0, 1, refined, boxes=np.array([[0, 0, 8, 8]]))
    session.paint(1, 0, [[20.0, 40.0], [30.0, 40.0]], radius=2)
    edited = session.images[1].instances[0].final.copy()
    # no close(): what a crash leaves behind must be enough
    again = Session(_dataset(tmp_path), path)
    assert again.images[0].instances[0].status == "accepted"
    assert np.array_equal(again.images[0].instances[1].refined, refined)
    assert again.images[0].instances[1].boxes.tolist() == [[0, 0, 8, 8]]
    assert again.images[1].instances[0].status == "edited"
    assert np.array_equal(again.images[1].instances[0].final, edited)
    assert again.restore_message is None


def test_compaction_and_torn_journal_line(tmp_path):
    path = tmp_path / "s.bprsession"
    session = Session(_dataset(tmp_path), path, compact_every=3)
    for k in range(5):
        session.paint(0, 0, [[5.0 + 3 * k, 50.0]], radius=1)
    store = SessionStore(path)
    snapshot, entries = store.load()
    assert snapshot["seq"] >= 3 and len(entries) <= 2
    good = session.images[0].instances[0].final.copy()
    with open(store.journal_path, "ab") as f:
        f.write(b'{"seq": 99, "op": "change", "ima')  # the program died while writing this line
    again = Session(_dataset(tmp_path), path)
    assert np.array_equal(again.images[0].instances[0].final, good)
    again.paint(0, 0, [[40.0, 55.0]], radius=1)  # appending after the torn line still works
    assert Session(_dataset(tmp_path), path).images[0].instances[0].final[55, 40]


def test_session_of_another_dataset_is_moved_aside(tmp_path):
    path = tmp_path / "s.bprsession"
    Session(_dataset(tmp_path), path).accept(0, 0)
    other = Session(_dataset(tmp_path, n_images=1), path)
    assert "moved aside" in other.restore_message
    assert other.images[0].instances[0].status == "unreviewed"
    assert path.with_name(path.name + ".old").exists()
    path.write_text("{not json")
    assert "moved aside" in Session(_dataset(tmp_path, n_images=1), path).restore_message


def test_kill_9_loses_at_most_the_last_stroke(tmp_path):
    """A child process paints strokes and is killed with SIGKILL; every stroke it reported is back."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_session import _dataset
        from bpr_studio.session import Session
        from pathlib import Path
        s = Session(_dataset(Path({str(tmp_path)!r})), Path({str(tmp_path / 'k.bprsession')!r}), compact_every=4)
        for k in range(1000):
            s.paint(0, 1, [[(k * 7) % 80, (k * 3) % 60]], radius=1)
            print(k, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    done = -1
    for line in proc.stdout:
        done = int(line)
        if done >= 12:
            break
    assert done >= 12, "the painting process ended early"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    restored = Session(_dataset(tmp_path), tmp_path / "k.bprsession").images[0].instances[1].final
    for k in range(done + 1):
        assert restored[(k * 3) % 60, (k * 7) % 80], f"stroke {k} lost"


def test_export_choices(tmp_path):
    session = Session(_dataset(tmp_path))
    refined = np.zeros((60, 80), bool)
    refined[0:10, 0:10] = True
    session.set_refined(0, 0, refined)
    session.set_refined(0, 1, refined)
    session.accept(0, 0)
    assert np.array_equal(session.export_dataset("refined").images[0].instances[1].mask, refined)
    coarse = session.export_dataset("coarse").images[0].instances
    assert np.array_equal(coarse[0].mask, refined) and np.array_equal(coarse[1].mask, session.images[0].instances[1].coarse)
    omitted = session.export_dataset("omit")
    assert len(omitted.images[0].instances) == 1 and len(omitted.images[1].instances) == 0


def test_only_the_current_image_keeps_decoded_masks(tmp_path):
    session = Session(_dataset(tmp_path, n_images=2))
    assert session.images[1].instances[0].coarse.any()
    assert not session.images[1].instances[0]._arrays  # decoded for the reader, not kept
    session.paint(1, 0, [[40.0, 50.0]], radius=2)  # editing another image works, then it is released
    assert session.images[1].instances[0].final[50, 40] and not session.images[1].instances[0]._arrays
    session.images[0].instances[0].coarse
    assert session.images[0].instances[0]._arrays
    session.select_image(1)
    assert not session.images[0].instances[0]._arrays


def test_set_patches_emits_an_event_and_survives_a_reopen(tmp_path):
    """The patches of a re-refined touch-up go through the session: an event, and the journal keeps the boxes."""
    dataset = _dataset(tmp_path, n_images=1)
    session = Session(dataset, tmp_path / "s.bprsession")
    events = []
    session.events.changed.connect(events.append)
    boxes = np.array([[0, 0, 8, 8], [4, 4, 12, 12]], np.int32)
    session.set_patches(0, 1, boxes, np.full((2, 8, 8), 0.75, np.float32))
    inst = session.images[0].instances[1]
    assert [(e.kind, e.image, e.instance) for e in events] == [("patches", 0, 1)]
    assert np.array_equal(inst.boxes, boxes) and inst.probs.dtype == np.float16
    session.store.close()  # no snapshot: the journal alone has it
    again = Session(dataset, tmp_path / "s.bprsession")
    assert np.array_equal(again.images[0].instances[1].boxes, boxes)


def test_view_state_without_widgets():
    """The view model: setters announce changes once, shown_name follows the mask mode."""
    from bpr_studio.session.view import ViewState

    view = ViewState()
    seen = []
    view.changed.connect(lambda e: seen.append((e.kind, e.instance)))
    assert view.select(2) and not view.select(2)
    assert view.set_mask_mode("coarse") and view.set_diff(True) and view.set_color_by("class")
    assert view.set_visible(1, False) and not view.set_visible(1, False) and view.hidden == {1}
    assert seen == [("selection", None), ("mask_mode", None), ("diff", None), ("color_by", None), ("visibility", 1)]
    with pytest.raises(ValueError):
        view.set_mask_mode("edited")

    class Inst:
        final_name = "edited"

        def has(self, name):
            return name != "refined"

    assert view.shown_name(Inst()) == "coarse"
    view.set_mask_mode("refined")
    assert view.shown_name(Inst()) == "coarse"  # nothing refined: the coarse mask
    view.set_mask_mode("final")
    assert view.shown_name(Inst()) == "edited"
    view.new_image()
    assert view.selected is None and not view.hidden


def test_a_session_beside_a_dataset_made_read_only_goes_on_in_the_user_folder(labelme_copy, tmp_path, monkeypatch):
    """Review beside the dataset, then the folder is marked read-only (chmod a-w, root included):
    reopening carries the session over to $XDG_DATA_HOME and goes on there; the folder is not written."""
    from bpr_studio.session import open_session
    from bpr_studio.session.store import beside_session_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    session = open_session(labelme_copy)
    beside = beside_session_path(labelme_copy)
    assert session.store.path == beside
    session.accept(0, 0)
    session.close()
    before = {p.name: p.read_bytes() for p in labelme_copy.iterdir()}
    labelme_copy.chmod(0o555)
    try:
        again = open_session(labelme_copy)
        assert again.store.path.parent == tmp_path / "data" / "bpr-studio" / "sessions"
        assert again.images[0].instances[0].status == "accepted"
        again.accept(0, 1)
        again.close()
        assert open_session(labelme_copy).images[0].instances[1].status == "accepted"
        assert {p.name: p.read_bytes() for p in labelme_copy.iterdir()} == before
    finally:
        labelme_copy.chmod(0o755)
