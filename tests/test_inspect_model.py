"""The Qt-free inspection model: measuring a session image by image, following its refinement events."""

from __future__ import annotations

import pytest

from bpr_studio.core.quality import measure_image
from bpr_studio.session.events import SessionEvent
from bpr_studio.session.inspect import InspectModel
from test_inspect import make_scene
from test_inspect_panel import make_session


@pytest.fixture(scope="module")
def scene():
    return make_scene()


def test_measures_every_image_then_follows_refinements(tmp_path, scene):
    session = make_session(tmp_path, scene, ground_truth=True, refined=False)
    updates = []
    model = InspectModel(on_update=lambda i, j: updates.append((i, j)))
    model.attach(session)
    assert model.queue == [0] and not model.records
    assert model.measure_next() is False  # the one image is done
    assert set(model.records) == {(0, 0), (0, 1)}
    assert all(q.iou_before is not None and q.iou_after is None for q in model.records.values())
    assert model.has_content()  # ground truth alone is something to show

    inst = session.images[0].instances[0]
    inst.refined, inst.boxes, inst.probs = scene.refined[0], scene.boxes[0], scene.probs[0]
    session.events.changed.emit(SessionEvent("mask", 0, 0))  # an edit: not a refinement
    assert updates == [] and model.records[(0, 0)].iou_after is None
    session.events.changed.emit(SessionEvent("refined", 0, 0))
    assert updates == [(0, 0)]
    expected = measure_image(list(scene.coarse[:1]), scene.categories[:1], [scene.refined[0]], [scene.boxes[0]],
                             [scene.probs[0]], list(scene.gt), scene.gt_categories, [False, False])[0]
    got = model.records[(0, 0)]
    assert (got.gt_index, got.iou_before, got.iou_after) == (expected.gt_index, expected.iou_before,
                                                             expected.iou_after)
    assert got.iou_change < 0  # the refiner dragged the bad mask further off
    assert model.instance_order(0, "worst_change", "got_worse") == [0]
    assert model.instance_order(0, "worst_change", "all") == [0, 1]  # the unrefined one last
    assert "1 worse" in model.summary()

    session.events.changed.emit(SessionEvent("patches", 0, 1))  # a re-refined touch-up
    assert updates[-1] == (0, 1)


def test_attaching_another_session_forgets_and_disconnects(tmp_path, scene):
    first = make_session(tmp_path, scene)
    model = InspectModel()
    model.attach(first)
    model.measure_next()
    model.attach(None)
    assert model.records == {} and model.queue == [] and model.session is None
    first.events.changed.emit(SessionEvent("refined", 0, 0))  # no longer followed
    assert model.records == {}


def test_summary_without_ground_truth_says_why_there_is_no_iou_change(tmp_path, scene):
    model = InspectModel()
    model.attach(make_session(tmp_path, scene, ground_truth=False))
    model.measure_next()
    assert model.summary() == "2 instances, 2 refined; no ground truth, so no IoU change"


def test_a_real_session_is_measured_on_windows_with_the_whole_image_figures(tmp_path, scene):
    """The model measures each instance on the window its figures read (its masks' and patches'
    boxes), not on whole masks: a real Session's records equal core.quality's on whole masks, for
    instances refined or not, matched or not, one on the image border and one empty, on the current
    image and on another."""
    import cv2
    import numpy as np

    from bpr_studio.core.patches import boundary_patches
    from bpr_studio.io.dataset import Dataset, ImageRecord, Instance
    from bpr_studio.session import Session
    from test_inspect import H, PATCH, W

    border = np.zeros((H, W), bool)
    border[:30, :25] = True  # touches the top and left edges
    border_gt = np.zeros((H, W), bool)
    border_gt[:33, :22] = True
    coarse = [scene.coarse[0], scene.coarse[1], border, np.zeros((H, W), bool)]
    categories = [1, 2, 1, 1]
    records, truth = [], []
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), scene.image[..., ::-1])
        records.append(ImageRecord(tmp_path / name, W, H, [Instance.from_mask(m, c) for m, c in zip(coarse, categories)]))
        truth.append(ImageRecord(tmp_path / name, W, H, [Instance.from_mask(m, c) for m, c in
                                                          zip([scene.gt[0], scene.gt[1], border_gt], [1, 2, 1])]))
    session = Session(Dataset(records, {1: "a", 2: "b"}), None, ground_truth=Dataset(truth, {1: "a", 2: "b"}))
    rng = np.random.default_rng(0)
    border_boxes = boundary_patches(border, PATCH, 0.25)
    refined = {0: (scene.refined[0], scene.boxes[0], scene.probs[0]), 2: (border_gt, border_boxes,
                                                                        rng.random((len(border_boxes), PATCH, PATCH)))}
    for i in (0, 1):
        for j, (mask, boxes, probs) in refined.items():
            if i == 0 or j == 2:
                session.set_refined(i, j, mask.copy(), boxes, probs)
    model = InspectModel()
    model.attach(session)
    while model.measure_next():
        pass
    assert not model.problems
    for i, image in enumerate(session.images):
        expected = measure_image(coarse, categories, [inst.refined for inst in image.instances],
                                 [inst.boxes for inst in image.instances], [inst.probs for inst in image.instances],
                                 [g.mask for g in image.ground_truth], [1, 2, 1], [False] * 3,
                                 image_index=i, image_name=image.record.path.name)
        assert [model.records[(i, j)] for j in range(4)] == expected
    assert model.records[(1, 2)].iou_after is not None and model.records[(1, 0)].iou_after is None
    assert model.records[(0, 3)].area == 0 and model.records[(0, 3)].gt_index is None


def test_ground_truth_of_another_size_is_a_problem_named_not_a_crash(tmp_path, scene):
    import numpy as np

    from bpr_studio.io.dataset import Instance

    session = make_session(tmp_path, scene, ground_truth=True)
    session.images[0].ground_truth = [Instance.from_mask(np.zeros((5, 10), bool), 1)]
    model = InspectModel()
    model.attach(session)
    assert model.measure_next() is False
    assert model.records == {} and model.problems == ["scene.png: ground-truth mask 0 is 10x5 pixels, expected 128x96"]
    model.remeasure(0, 1)
    assert model.problems[-1] == "scene.png #1: ground-truth mask 0 is 10x5 pixels, expected 128x96"
