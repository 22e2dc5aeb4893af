"""Children's events from the stores: which owner each concerns (a table), and the runner that reconciles each owner
once per burst and never twice at once."""

from __future__ import annotations

import threading
import time

import pytest

from modelplane_operator.agent import NAMESPACE_CONFIGMAP
from modelplane_operator.childevents import OwnerRunner, owners_of
from modelplane_operator.keys import AGENT_LABEL, MANAGED, MODEL_LABEL


def child(kind, name="x", **labels):
    return {"kind": kind, "metadata": {"namespace": "ns", "name": name, "labels": {**MANAGED, **labels}}}


@pytest.mark.parametrize("obj, owners", [
    (child("Deployment", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),
    (child("Service", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),
    (child("NetworkPolicy", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),
    (child("ServiceAccount", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),
    (child("Role", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),
    (child("RoleBinding", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),
    (child("Pod", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),
    (child("Deployment", **{AGENT_LABEL: "a"}), [("Agent", "ns", "a")]),
    (child("ConfigMap", **{AGENT_LABEL: "a"}), [("Agent", "ns", "a")]),
    (child("ConfigMap", NAMESPACE_CONFIGMAP), [("Namespace", "ns", "ns")]),
    (child("ConfigMap", "m-vllm-gate", **{MODEL_LABEL: "m"}), [("Model", "ns", "m")]),  # a gated Model's
    # a Service is no Agent's child; unlabelled objects are nobody's
    (child("Service", **{AGENT_LABEL: "a"}), []),
    (child("Deployment"), []),
    # a deletion stub (from a re-listing) has no kind's fields but its labels
    ({"kind": "Pod", "metadata": {"namespace": "ns", "name": "p", "labels": {MODEL_LABEL: "m"}}},
     [("Model", "ns", "m")]),
])
def test_owners_of(obj, owners):
    assert owners_of(obj) == owners


def wait_idle(runner, timeout=5):
    end = time.monotonic() + timeout
    while not runner.idle():
        assert time.monotonic() < end, "runner never went idle"
        time.sleep(0.01)


def test_an_owner_marked_while_it_runs_runs_again_after_never_beside():
    started, gate, runs, overlapping = threading.Event(), threading.Event(), [], []
    running = set()

    def handle(owner):
        if owner in running:
            overlapping.append(owner)
        running.add(owner)
        runs.append(owner)
        if len(runs) == 1:
            started.set()
            gate.wait(2)
        running.discard(owner)

    runner = OwnerRunner(handle, workers=4)
    runner.mark("a")
    assert started.wait(2)
    for _ in range(10):  # while "a" runs: one more run, not ten, and not beside the first
        runner.mark("a")
    gate.set()
    wait_idle(runner)
    assert runs == ["a", "a"] and not overlapping


def test_owners_run_side_by_side_and_a_failure_is_logged_not_fatal(caplog):
    seen, both = [], threading.Barrier(2, timeout=2)

    def handle(owner):
        seen.append(owner)
        if owner in ("a", "b"):
            both.wait()  # "a" and "b" must be running at the same time to pass
        if owner == "bad":
            raise RuntimeError("API server said 500")

    runner = OwnerRunner(handle, workers=4)
    for owner in ("a", "b", "bad"):
        runner.mark(owner)
    wait_idle(runner)
    assert sorted(seen) == ["a", "b", "bad"]
    assert "reconciling 'bad' after a child's event failed" in caplog.text
    runner.mark("c")
    wait_idle(runner)
    assert seen[-1] == "c"


def test_each_run_gets_its_own_copy_of_the_context():
    import contextvars
    var = contextvars.ContextVar("var", default="unset")
    values = []
    runner = OwnerRunner(lambda owner: (values.append(var.get()), var.set(owner)), workers=2)
    var.set("kopf's")
    runner.context = contextvars.copy_context()
    var.set("elsewhere")
    for owner in ("a", "b", "c"):
        runner.mark(owner)
    wait_idle(runner)
    assert values == ["kopf's"] * 3  # what one run sets is not seen by the next
