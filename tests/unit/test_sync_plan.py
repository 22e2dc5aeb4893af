"""What a reconcile does with one child, as a table: plan_child is pure."""

from __future__ import annotations

import pytest

from modelplane_operator.status import Problem
from modelplane_operator.sync import controlled_by, plan_child, unwanted

OWNER = {"kind": "Model", "metadata": {"name": "m", "namespace": "ns", "uid": "u1"}}
DESIRED = {"kind": "Deployment", "metadata": {"name": "m", "namespace": "ns"}, "spec": {"replicas": 1}}


def held(uid=None, controller=True, replicas=1):
    refs = [{"uid": uid, "controller": controller, "kind": "Model", "name": "m"}] if uid else []
    return {"kind": "Deployment", "metadata": {"name": "m", "namespace": "ns", "ownerReferences": refs},
            "spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate"}}}


@pytest.mark.parametrize("actual, spec_changed, verb, problem", [
    (None, False, "Created", None),
    (held("u1"), False, None, None),                         # server defaults are not drift
    (held("u1", replicas=3), True, "Updated", None),         # the owner's spec changed
    (held("u1", replicas=3), False, "DriftReverted", None),  # someone else changed it
    # Someone else's object with our name: never written, whatever its labels say.
    (held("u2"), False, None, "NameConflict"),               # another owner (an Agent named like the Model)
    (held("u2", replicas=3), True, None, "NameConflict"),
    (held(None), False, None, "NameConflict"),               # no owner at all
    (held("u1", controller=False), False, None, "NameConflict"),  # ours only as a non-controller
])
def test_plan_child(actual, spec_changed, verb, problem):
    got_verb, got_problem = plan_child(OWNER, DESIRED, actual, spec_changed)
    assert got_verb == verb
    assert (got_problem.reason if got_problem else None) == problem
    if got_problem:
        assert "ns/m already exists and is not managed by this Model" in got_problem.message


def test_controlled_by_checks_the_uid_not_the_name():
    assert controlled_by(held("u1"), OWNER)
    assert not controlled_by(held("u2"), OWNER)
    assert isinstance(plan_child(OWNER, DESIRED, held("u2"), False)[1], Problem)


def policy(uid=None):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {
        "name": "m", "namespace": "ns", "uid": "p1",
        "ownerReferences": [{"uid": uid, "controller": True, "kind": "Model", "name": "m"}] if uid else []}}


def router(uid):
    return {**held(uid), "metadata": {**held(uid)["metadata"], "name": "m-router"}}


NP, DEP, ROUTER = ("NetworkPolicy", "m"), ("Deployment", "m"), ("Deployment", "m-router")


@pytest.mark.parametrize("desired_keys, observed, removed", [
    ([DEP, ("Service", "m")], {DEP: held("u1"), NP: policy("u1")}, [NP]),
    ([DEP, ("Service", "m"), NP], {NP: policy("u1")}, []),   # still wanted
    ([DEP, ("Service", "m")], {NP: None}, []),               # none written
    ([DEP, ("Service", "m")], {NP: policy("u2")}, []),       # someone else's: left alone
    ([DEP, ("Service", "m")], {NP: policy(None)}, []),
    ([DEP], {DEP: held("u1"), ROUTER: router("u1")}, [ROUTER]),  # routing switched off: the same kind, another name
    ([DEP, ROUTER], {DEP: held("u1"), ROUTER: router("u1")}, []),
    ([DEP], {DEP: held("u1"), ROUTER: router("u2")}, []),   # a Model named m-router's own Deployment
])
def test_unwanted_children_are_the_owners_own_no_longer_rendered(desired_keys, observed, removed):
    desired = [{"kind": kind, "metadata": {"name": name, "namespace": "ns"}} for kind, name in desired_keys]
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in unwanted(OWNER, desired, observed)] == removed
