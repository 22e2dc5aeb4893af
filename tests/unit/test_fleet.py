"""Operator upgrades roll a few Models at a time: the decision and the line, as tables."""

import pytest

from modelplane_operator.fleet import RolloutSlots, operator_changed, stamp, waiting_status
from modelplane_operator.render import GENERATION_ANNOTATION


def deployment(generation="3", image="vllm:1", stamped=True):
    d = {"metadata": {"name": "m", "annotations": {GENERATION_ANNOTATION: generation}},
         "spec": {"template": {"spec": {"containers": [{"image": image}]}}}}
    return stamp(d) if stamped else d


@pytest.mark.parametrize("actual, desired, changed", [
    (None, deployment(), False),                                           # new Model: created at once
    (deployment(), deployment(), False),                                   # nothing to do
    (deployment(image="vllm:0"), deployment(), True),                      # same generation, new rendering
    (deployment(image="vllm:0", stamped=False), deployment(), True),       # made by an operator before stamps
    (deployment("2", image="vllm:0"), deployment("3"), False),             # the Model's spec changed: at once
])
def test_only_a_rendering_change_at_the_same_generation_waits(actual, desired, changed):
    assert operator_changed(actual, desired) is changed


def test_drift_someone_else_made_is_not_an_upgrade():
    edited = deployment()
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "other"  # the stamp stays what we wrote
    assert not operator_changed(edited, deployment())


def test_slots_admit_in_order_and_release_the_next():
    slots = RolloutSlots(1)
    assert slots.admit("a", ("ns", "a"))
    assert not slots.admit("b", ("ns", "b")) and not slots.admit("c", ("ns", "c"))
    assert slots.waiting("b") == 1 and slots.waiting("c") == 2
    assert not slots.admit("c", ("ns", "c"))  # not its turn even when asked again
    assert slots.release("a") == [("ns", "b")]
    assert slots.admit("b", ("ns", "b")) and not slots.admit("c", ("ns", "c"))
    slots.leave_line("c")  # its spec changed: it rolls anyway, and no longer waits
    assert slots.release("b") == [] and slots.waiting("c") == 0


def test_limit_zero_waits_for_the_next_spec_change():
    slots = RolloutSlots(0)
    assert not slots.admit("a", ("ns", "a"))
    status = waiting_status({"conditions": [{"type": "Progressing", "status": "False", "reason": "RolloutComplete"}]},
                            slots.waiting("a"), 0)
    assert status["conditions"][0]["reason"] == "UpgradeWaiting"
    assert "next spec change" in status["conditions"][0]["message"]


def test_a_settled_rollout_frees_its_slot_whatever_the_outcome():
    from modelplane_operator.fleet import settled
    for reason in ("RolloutComplete", "ProgressDeadlineExceeded", "ChildRefused"):
        assert settled({"conditions": [{"type": "Progressing", "status": "False", "reason": reason}]})
    assert not settled({"conditions": [{"type": "Progressing", "status": "True", "reason": "RollingOut"}]})
