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


def pod(scheduled="True", reason="", message="", ready=False, waiting=None, template=""):
    status = {"conditions": [{"type": "PodScheduled", "status": scheduled, "reason": reason, "message": message},
                             {"type": "Ready", "status": "True" if ready else "False"}]}
    if waiting:
        status["containerStatuses"] = [{"state": {"waiting": {"reason": waiting, "message": "back-off"}},
                                        "restartCount": 4}]
    return pod_summary({"metadata": {"name": "m-abc", "labels": {"pod-template-hash": template}}, "status": status})


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


def test_autoscaled_to_zero_is_idle_not_pending():
    """At zero by its autoscaler, a routed Model still answers: the first request wakes it. Pending would read as
    waiting for a node."""
    idle = model(replicas=0)
    idle["spec"].update(routing={}, autoscaling={"minReplicas": 0, "maxReplicas": 2})
    s = compute_status(idle, deployment(replicas=0, updated=0), [], CFG, NOW)
    assert s["phase"] == "Idle" and conds(s)["Ready"]["reason"] == "ScaledToZero"
    assert "wakes" in conds(s)["Ready"]["message"]
    idle["spec"]["autoscaling"]["keda"] = {"prometheusAddress": "http://p:9090"}
    assert compute_status(idle, deployment(replicas=0, updated=0), [], CFG, NOW)["phase"] == "Pending"


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


def exited(restarts):
    return pod_summary({"metadata": {"name": "m-abc"}, "status": {
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
        "containerStatuses": [{"restartCount": restarts, "state": {"terminated": {
            "exitCode": 1, "reason": "Error", "message": "CUDA out of memory"}}}]}})


def test_container_that_exited_with_an_error_again_fails_the_model():
    s = compute_status(model(), deployment(), [exited(restarts=1)], CFG, NOW)
    assert s["phase"] == "Failed" and "CUDA out of memory" in conds(s)["Ready"]["message"]


def test_a_first_exit_is_not_a_failure_the_kubelet_restarts_it():
    assert compute_status(model(), deployment(), [exited(restarts=0)], CFG, NOW)["phase"] == "Loading"


@pytest.mark.parametrize("old,new,was_ready,due", [
    (None, "Pending", False, False), ("Pending", "Loading", False, False), ("Loading", "Ready", False, False),
    ("Pending", "Ready", False, False), (None, "Ready", False, False),  # a new Model's way up: status alone
    ("Loading", "Ready", True, True), ("Pending", "Ready", True, True),  # back after having left Ready
    ("Failed", "Ready", False, True),  # recovered from a failure a Warning reported
    ("Loading", "Failed", False, True), ("Ready", "Loading", True, True), ("Ready", "Pending", True, True),
    ("Ready", "Ready", True, False), ("Failed", "Failed", False, False), ("Failed", "Loading", False, False)])
def test_phase_events_for_what_a_person_acts_on(old, new, was_ready, due):
    assert phase_event_due(old, new, was_ready) is due


# --- rollouts that wait: for a GPU (Surge on a full cluster), for a volume (a ReadWriteOnce claim on two nodes) ----

GPU_FULL = ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No "
            "preemption victims found for incoming pod.")


def rollout_model(replicas=1, strategy=None, claim=None, gpu_resource=None, source="hf://a/b"):
    spec = {"source": source, "replicas": replicas}
    if strategy:
        spec["rollout"] = {"strategy": strategy}
    if claim:
        spec["cache"] = {"claimName": claim}
    if gpu_resource:
        spec["gpuResourceName"] = gpu_resource
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 4}, "spec": spec, "status": {}}


def creating(name="m-new", sandbox="False", scheduled_at="2026-01-01T00:00:00Z"):
    """A pod placed on a node whose kubelet has not created its sandbox: it waits for its volumes."""
    conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled_at},
                  {"type": "Ready", "status": "False"}]
    if sandbox is not None:
        conditions.append({"type": "PodReadyToStartContainers", "status": sandbox})
    return pod_summary({"metadata": {"name": name}, "status": {"conditions": conditions, "containerStatuses": [
        {"state": {"waiting": {"reason": "ContainerCreating"}}, "restartCount": 0}]}})


SERVING = pod(ready=True)
NO_GPU = pod("False", "Unschedulable", GPU_FULL)
DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "m-2" has timed out progressing.'}

# (case, model, deployment, pods) -> (phase, Ready reason, Progressing status, Progressing reason, words in message)
WAITING = [
    ("surge rollout on a full cluster keeps serving and suggests Replace",
     rollout_model(), deployment(ready=1, replicas=2, updated=1), [SERVING, NO_GPU],
     ("Ready", "Serving", "True", "WaitingForGPU",
      ["1 new replica(s) wait for 1 free nvidia.com/gpu while 1 old replica(s) keep serving",
       "spec.rollout.strategy: Replace", "Insufficient nvidia.com/gpu"])),
    ("past the progress deadline it still says why",
     rollout_model(), deployment(ready=1, replicas=2, updated=1, conditions=[DEADLINE]), [SERVING, NO_GPU],
     ("Ready", "Serving", "False", "WaitingForGPU", ["spec.rollout.strategy: Replace", "progress deadline"])),
    ("the pods tell a rollout before the Deployment's counts do (a new template's pod beside an old one's)",
     rollout_model(), deployment(ready=1, replicas=1, updated=1),
     [pod(ready=True, template="old"), pod("False", "Unschedulable", GPU_FULL, template="new")],
     ("Ready", "Serving", "True", "WaitingForGPU", ["while 1 old replica(s) keep serving",
                                                    "spec.rollout.strategy: Replace"])),
    ("Replace rollout that still cannot get a GPU suggests nothing it already does",
     rollout_model(replicas=2, strategy="Replace"), deployment(ready=1, replicas=2, updated=1), [SERVING, NO_GPU],
     ("Ready", "Serving", "True", "WaitingForGPU", ["1 replica(s) wait for 1 free nvidia.com/gpu each"])),
    ("scale-up without free GPUs is no rollout: Replace would not help",
     rollout_model(replicas=2), deployment(ready=1, replicas=2, updated=2), [SERVING, NO_GPU],
     ("Ready", "Serving", "True", "WaitingForGPU", ["1 replica(s) wait for 1 free nvidia.com/gpu each"])),
    ("a new Model that does not fit is Pending, and Progressing says why",
     rollout_model(), deployment(), [NO_GPU],
     ("Pending", "Unschedulable", "True", "WaitingForGPU", ["1 replica(s) wait"])),
    ("another vendor's GPU resource",
     rollout_model(gpu_resource="amd.com/gpu"), deployment(ready=1, replicas=2, updated=1),
     [SERVING, pod("False", "Unschedulable", "0/3 nodes are available: 3 Insufficient amd.com/gpu.")],
     ("Ready", "Serving", "True", "WaitingForGPU", ["free amd.com/gpu", "Replace"])),
    ("unschedulable for another reason is not a GPU wait",
     rollout_model(), deployment(ready=1, replicas=2, updated=1),
     [SERVING, pod("False", "Unschedulable", "0/3 nodes are available: 3 node(s) didn't match node selector.")],
     ("Ready", "Serving", "True", "RollingOut", [])),
    ("surge pod stuck on a ReadWriteOnce cache claim held on another node",
     rollout_model(claim="hf-cache"), deployment(ready=1, replicas=2, updated=1), [SERVING, creating()],
     ("Ready", "Serving", "True", "WaitingForVolume",
      ["new pod m-new waiting in ContainerCreating since 2026-01-01T00:00:00Z", "claims hf-cache",
       "ReadWriteOnce claim cannot attach to two nodes", "Multi-Attach", "ReadWriteMany",
       "spec.rollout.strategy: Replace"])),
    ("a pvc:// source's claim counts too",
     rollout_model(source="pvc://weights/qwen"), deployment(ready=1, replicas=2, updated=1), [SERVING, creating()],
     ("Ready", "Serving", "True", "WaitingForVolume", ["claims weights"])),
    ("Replace with nothing serving: the new replica waits for the claim to move",
     rollout_model(strategy="Replace", claim="hf-cache"), deployment(ready=0, replicas=1, updated=1),
     [creating()], ("Loading", "WaitingForVolume", "True", "WaitingForVolume", ["ReadWriteMany"])),
    ("a sandbox exists: ContainerCreating is the image pull, not a volume",
     rollout_model(claim="hf-cache"), deployment(ready=1, replicas=2, updated=1),
     [SERVING, creating(sandbox="True")], ("Ready", "Serving", "True", "RollingOut", [])),
    ("no sandbox condition (kubelet before 1.29): cannot tell, says nothing",
     rollout_model(claim="hf-cache"), deployment(ready=1, replicas=2, updated=1),
     [SERVING, creating(sandbox=None)], ("Ready", "Serving", "True", "RollingOut", [])),
    ("no claim: an emptyDir never waits to attach",
     rollout_model(), deployment(ready=1, replicas=2, updated=1), [SERVING, creating()],
     ("Ready", "Serving", "True", "RollingOut", [])),
]


@pytest.mark.parametrize("case,m,dep,pods,expected", WAITING, ids=[w[0] for w in WAITING])
def test_rollout_waits_are_reported(case, m, dep, pods, expected):
    phase, ready_reason, progressing_status, progressing_reason, words = expected
    s = compute_status(m, dep, pods, CFG, NOW)
    c = conds(s)
    assert (s["phase"], c["Ready"]["reason"]) == (phase, ready_reason)
    assert (c["Progressing"]["status"], c["Progressing"]["reason"]) == (progressing_status, progressing_reason)
    for w in words:
        assert w in c["Progressing"]["message"], (w, c["Progressing"]["message"])
    if ready_reason == "Serving":
        assert s["readyReplicas"] >= 1 and c["Ready"]["status"] == "True"


def test_replace_is_suggested_only_for_a_surge_rollout():
    for m, dep in [(rollout_model(replicas=2, strategy="Replace"), deployment(ready=1, replicas=2, updated=1)),
                   (rollout_model(replicas=2), deployment(ready=1, replicas=2, updated=2))]:
        assert "Replace" not in conds(compute_status(m, dep, [SERVING, NO_GPU], CFG, NOW))["Progressing"]["message"]
    vol = compute_status(rollout_model(strategy="Replace", claim="c"), deployment(ready=0, replicas=1, updated=1),
                         [creating()], CFG, NOW)
    assert "Replace" not in conds(vol)["Progressing"]["message"]


def test_waiting_messages_are_stable_so_status_is_not_rewritten():
    """No "for N s" that would change on every recompute: the wait is dated by when the pod was placed."""
    args = (rollout_model(claim="hf-cache"), deployment(ready=1, replicas=2, updated=1), [SERVING, creating()], CFG)
    first = compute_status(*args, NOW)
    later = compute_status({**args[0], "status": first}, *args[1:], "2026-01-01T00:10:00Z")
    assert not status_changed(first, later)


def test_pod_summary_keeps_the_sandbox_condition_and_when_the_pod_was_placed():
    s = creating(sandbox="False", scheduled_at="2026-01-01T00:01:02Z")
    assert (s["sandbox"], s["scheduledAt"]) == ("False", "2026-01-01T00:01:02Z")
    assert creating(sandbox=None)["sandbox"] == "Unknown"


PROGRESS_DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": "ReplicaSet has timed out progressing."}


@pytest.mark.parametrize("case, replicas, dep, pods, phase, ready_reason", [
    ("no Deployment yet", 1, None, [], "Pending", None),
    ("no pod yet", 1, deployment(), [], "Pending", None),
    ("not placed by the scheduler", 1, deployment(), [pod("False", "Unschedulable", "0/3 nodes")], "Pending", None),
    ("placed, loading weights", 1, deployment(), [pod()], "Loading", None),
    ("one replica serving", 1, deployment(ready=1), [pod(ready=True)], "Ready", None),
    ("one of two serving", 2, deployment(ready=1, replicas=2, updated=2), [pod(ready=True), pod()], "Ready", None),
    ("crash loop", 1, deployment(), [pod(waiting="CrashLoopBackOff")], "Failed", "CrashLoopBackOff"),
    ("image cannot be pulled", 1, deployment(), [pod(waiting="ImagePullBackOff")], "Failed", "ImagePullBackOff"),
    ("progress deadline passed", 1, deployment(conditions=[PROGRESS_DEADLINE]), [pod()], "Failed", None),
    ("scaled to zero", 0, deployment(replicas=0, updated=0), [], "Pending", "ScaledToZero"),
])
def test_phase_table(case, replicas, dep, pods, phase, ready_reason):
    s = compute_status(model(replicas=replicas), dep, pods, CFG, NOW)
    assert s["phase"] == phase, case
    if ready_reason:
        assert conds(s)["Ready"]["reason"] == ready_reason, case
