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
