"""Status computation from a Deployment and pod summaries."""

import pytest

from modelplane_operator.config import Config
from modelplane_operator.sync import is_subset
from modelplane_operator.status import Problem, compute_status, phase_event_due, pod_summary, status_changed

CFG = Config()
NOW = "2026-01-01T00:00:00Z"


def model(replicas=1, status=None):
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 3},
            "spec": {"source": "hf://a/b", "replicas": replicas}, "status": status or {}}


def deployment(ready=0, replicas=1, updated=1, conditions=()):
    return {"metadata": {"generation": 2},
            "status": {"observedGeneration": 2, "readyReplicas": ready, "replicas": replicas,
                       "updatedReplicas": updated, "conditions": list(conditions)}}


def pod(scheduled="True", reason="", message="", ready=False, waiting=None):
    status = {"conditions": [{"type": "PodScheduled", "status": scheduled, "reason": reason, "message": message},
                             {"type": "Ready", "status": "True" if ready else "False"}]}
    if waiting:
        status["containerStatuses"] = [{"state": {"waiting": {"reason": waiting, "message": "back-off"}},
                                        "restartCount": 4}]
    return pod_summary({"metadata": {"name": "m-abc"}, "status": status})


def conds(status):
    return {c["type"]: c for c in status["conditions"]}


def test_ready_when_replicas_ready():
    s = compute_status(model(), deployment(ready=1), [pod(ready=True)], CFG, NOW)
    assert s["phase"] == "Ready" and s["readyReplicas"] == 1 and s["readySummary"] == "1/1"
    c = conds(s)
    assert c["Ready"]["status"] == "True" and c["Progressing"]["reason"] == "RolloutComplete"
    assert s["endpoint"] == "http://m.ns.svc.cluster.local:8000/v1"
    assert s["servedModelName"] == "m" and s["observedGeneration"] == 3
    assert s["selector"] == "modelplane.dev/model=m"


def test_unschedulable_carries_scheduler_message():
    msg = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    s = compute_status(model(), deployment(), [pod("False", "Unschedulable", msg)], CFG, NOW)
    c = conds(s)
    assert s["phase"] == "Pending"
    assert c["Scheduled"] == {**c["Scheduled"], "status": "False", "reason": "Unschedulable", "message": msg}
    assert c["Ready"]["status"] == "False" and c["Ready"]["message"] == msg


def test_pending_until_the_scheduler_has_placed_a_pod():
    """A new pod has no PodScheduled condition yet (seen on the real node): it loads nothing, so Pending."""
    fresh = pod_summary({"metadata": {"name": "m-new"}, "status": {"phase": "Pending"}})
    s = compute_status(model(), deployment(), [fresh], CFG, NOW)
    assert s["phase"] == "Pending" and conds(s)["Ready"]["reason"] == "WaitingForPods"


def test_loading_when_scheduled_not_ready():
    s = compute_status(model(), deployment(), [pod()], CFG, NOW)
    assert s["phase"] == "Loading" and conds(s)["Progressing"]["status"] == "True"


def test_crash_loop_is_failed_with_reason():
    s = compute_status(model(), deployment(), [pod(waiting="CrashLoopBackOff")], CFG, NOW)
    assert s["phase"] == "Failed" and conds(s)["Ready"]["reason"] == "CrashLoopBackOff"


def test_name_conflict_is_failed():
    s = compute_status(model(), None, [], CFG, NOW, Problem("NameConflict", "Deployment ns/m already exists"))
    assert s["phase"] == "Failed" and conds(s)["Ready"]["reason"] == "NameConflict"


def test_refused_child_fails_a_model_with_nothing_serving():
    s = compute_status(model(), None, [], CFG, NOW, Problem("ChildRefused", "Deployment.apps is invalid: ..."))
    assert s["phase"] == "Failed"
    assert conds(s)["Ready"]["reason"] == conds(s)["Progressing"]["reason"] == "ChildRefused"
    assert conds(s)["Ready"]["message"] == "Deployment.apps is invalid: ..."


def test_refused_change_leaves_a_serving_model_ready_and_says_so():
    s = compute_status(model(), deployment(ready=1), [], CFG, NOW, Problem("ChildRefused", "requests exceed limits"))
    assert s["phase"] == "Ready" and conds(s)["Ready"]["status"] == "True"
    assert (conds(s)["Progressing"]["status"], conds(s)["Progressing"]["reason"]) == ("False", "ChildRefused")
    assert conds(s)["Progressing"]["message"] == "requests exceed limits"


def test_scaled_to_zero():
    s = compute_status(model(replicas=0), deployment(replicas=0, updated=0), [], CFG, NOW)
    assert s["phase"] == "Pending" and conds(s)["Ready"]["reason"] == "ScaledToZero"


def test_transition_time_kept_while_status_unchanged():
    first = compute_status(model(), deployment(), [pod()], CFG, NOW)
    again = compute_status(model(status=first), deployment(), [pod()], CFG, "2026-01-01T00:05:00Z")
    assert conds(again)["Ready"]["lastTransitionTime"] == NOW
    assert not status_changed(first, again)
    ready = compute_status(model(status=first), deployment(ready=1), [pod(ready=True)], CFG, "2026-01-01T00:05:00Z")
    assert conds(ready)["Ready"]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert status_changed(first, ready)


def test_drift_check_ignores_server_defaults_but_not_changed_values():
    desired = {"spec": {"replicas": 1, "template": {"containers": [{"name": "vllm", "args": ["a"]}]}}}
    actual = {"spec": {"replicas": 1, "progressDeadlineSeconds": 600,
                       "template": {"containers": [{"name": "vllm", "args": ["a"], "terminationMessagePath": "x"}]}}}
    assert is_subset(desired, actual)
    actual["spec"]["template"]["containers"][0]["args"] = ["b"]
    assert not is_subset(desired, actual)


def test_observed_generation_is_the_one_the_deployment_was_rendered_from():
    dep = deployment(ready=1)
    dep["metadata"]["annotations"] = {"modelplane.dev/model-generation": "2"}
    assert compute_status(model(), dep, [pod(ready=True)], CFG, NOW)["observedGeneration"] == 2


def test_container_that_exited_with_an_error_fails_the_model():
    summary = pod_summary({"metadata": {"name": "m-abc"}, "status": {
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
        "containerStatuses": [{"state": {"terminated": {"exitCode": 1, "reason": "Error",
                                                        "message": "CUDA out of memory"}}}]}})
    s = compute_status(model(), deployment(), [summary], CFG, NOW)
    assert s["phase"] == "Failed" and "CUDA out of memory" in conds(s)["Ready"]["message"]


@pytest.mark.parametrize("old,new,due", [
    (None, "Pending", False), ("Pending", "Loading", False), ("Loading", "Ready", True), ("Pending", "Ready", True),
    ("Loading", "Failed", True), ("Ready", "Loading", True), ("Ready", "Pending", True), ("Ready", "Ready", False),
    ("Failed", "Failed", False), ("Failed", "Loading", False)])
def test_phase_events_for_what_a_person_acts_on(old, new, due):
    assert phase_event_due(old, new) is due
