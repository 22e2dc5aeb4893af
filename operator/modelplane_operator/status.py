"""A Model's status, computed from what its children report. Pure: the same inputs give the same status, so the
operator writes status only when something a person would notice has changed."""

from __future__ import annotations

from typing import NamedTuple

from .autoscale import wakes_on_request
from .config import Config
from .keys import GENERATION_ANNOTATION
from .model import endpoint, served_model_name, spec_of
from .render import claims, selector, server_replicas
from .routing import router_name, router_status

# Container waiting reasons that will not fix themselves without a change to the Model or the cluster.
FAILING_REASONS = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                   "CreateContainerConfigError", "CreateContainerError", "Error", "OOMKilled", "ContainerCannotRun"}


def pod_summary(pod: dict) -> dict:
    """What status needs of a pod; kept small because the operator indexes every model pod."""
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    # False until the kubelet has the pod's sandbox, which it creates only once every volume is attached and mounted
    # (image pulls come after it): a pod waiting in ContainerCreating without it waits for its volumes (or its
    # network). Absent on kubelets older than 1.29 (or with the PodReadyToStartContainersCondition gate off).
    sandbox = conditions.get("PodReadyToStartContainers") or {}
    waiting = [(s["state"]["waiting"].get("reason", ""), s["state"]["waiting"].get("message", ""))
               for s in status.get("containerStatuses") or [] if (s.get("state") or {}).get("waiting")]
    # A container that exited with an error again, after a restart, fails the same way (its back-off has not begun
    # yet). A first exit is not a failure: the kubelet restarts it at once (a killed or OOM-killed server recovers).
    waiting += [(t.get("reason") or "Error", t.get("message") or f"exit code {t.get('exitCode')}")
                for s in status.get("containerStatuses") or []
                for t in [(s.get("state") or {}).get("terminated")]
                if t and t.get("exitCode", 0) != 0 and s.get("restartCount", 0) >= 1]
    terminated = [(s["lastState"]["terminated"].get("reason", ""), s["lastState"]["terminated"].get("exitCode"))
                  for s in status.get("containerStatuses") or [] if (s.get("lastState") or {}).get("terminated")]
    return {
        "name": pod["metadata"]["name"],
        "ip": status.get("podIP", ""),  # where the autoscaler reads its /metrics
        "version": pod["metadata"].get("resourceVersion", ""),
        "template": (pod["metadata"].get("labels") or {}).get("pod-template-hash", ""),  # its ReplicaSet's
        "deleting": bool(pod["metadata"].get("deletionTimestamp")),
        "scheduled": scheduled.get("status", "Unknown"),
        "scheduleReason": scheduled.get("reason", ""),
        "scheduleMessage": scheduled.get("message", ""),
        "scheduledAt": scheduled.get("lastTransitionTime") or "",
        "sandbox": sandbox.get("status", "Unknown"),
        "ready": (conditions.get("Ready") or {}).get("status") == "True",
        "waiting": waiting,
        "lastTerminated": terminated,
        "restarts": sum(s.get("restartCount", 0) for s in status.get("containerStatuses") or []),
    }


class Problem(NamedTuple):
    """Why a child could not be written: NameConflict (the name is someone else's object) or ChildRefused (the API
    server refused it; message is its own words)."""
    reason: str
    message: str


def condition(type_: str, status: str, reason: str, message: str, generation: int, previous: list,
              now: str) -> dict:
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status and old.get("lastTransitionTime") \
        else now
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation}


def compute_status(model: dict, deployment: dict | None, pods: list[dict], config: Config, now: str,
                   problem: Problem | None = None, router: dict | None = None) -> dict:
    """Status for `model` given its Deployment (or None), summaries of its pods, and why a child could not be
    written, if so. A refused change to a Model that still serves leaves it Ready (what runs keeps running) and says
    so in Progressing; with nothing serving it is Failed. A routed Model serves through its router (`router`, its
    Deployment): it is Ready when a router and a server replica are."""
    spec = spec_of(model)
    meta = model["metadata"]
    applied = ((deployment or {}).get("metadata") or {}).get("annotations", {}).get(GENERATION_ANNOTATION)
    generation = int(applied) if applied else meta.get("generation", 1)
    desired = server_replicas(model)
    previous = (model.get("status") or {}).get("conditions") or []
    dstatus = (deployment or {}).get("status") or {}
    ready = dstatus.get("readyReplicas", 0)
    replicas = dstatus.get("replicas", 0)
    updated = dstatus.get("updatedReplicas", 0)
    live = [p for p in pods if not p["deleting"]]
    unschedulable = [p for p in live if p["scheduled"] == "False"]
    failing = [(p["name"], r, m) for p in live for r, m in p["waiting"] if r in FAILING_REASONS]
    deadline = next((c for c in dstatus.get("conditions") or []
                     if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"), None)
    # Pods of an earlier template still count: a rollout is under way, and with Surge they are what serves. The
    # pods tell it first (a new ReplicaSet's pod beside an old one's); the Deployment's counts follow later.
    rolling = replicas > updated or len({p["template"] for p in live if p["template"]}) > 1
    surge = (spec.get("rollout") or {}).get("strategy", "Surge") == "Surge"
    waiting_gpu = waiting_for_gpu(spec, unschedulable, config)
    waiting_volume = waiting_for_volume(spec, live)

    def cond(type_, ok, reason, message):
        return condition(type_, ok, reason, message, generation, previous, now)

    # Scheduled: carries the scheduler's own words when a pod cannot be placed.
    if unschedulable:
        p = unschedulable[0]
        scheduled = cond("Scheduled", "False", p["scheduleReason"] or "Unschedulable",
                         p["scheduleMessage"] or "waiting for the scheduler")
    elif live:
        scheduled = cond("Scheduled", "True", "Scheduled", f"{len(live)} pod(s) placed on nodes")
    elif desired == 0:
        scheduled = cond("Scheduled", "True", "ScaledToZero", "no replicas requested")
    else:
        scheduled = cond("Scheduled", "Unknown", "WaitingForPods", "no pods created yet")

    rolled_out = (deployment is not None and
                  (deployment.get("metadata") or {}).get("generation") == dstatus.get("observedGeneration") and
                  updated == desired and replicas == desired and ready == desired)
    if problem:
        progressing = cond("Progressing", "False", problem.reason, problem.message)
    elif waiting_gpu:
        progressing = cond("Progressing", "False" if deadline else "True", "WaitingForGPU",
                           gpu_message(spec, waiting_gpu, ready, rolling and surge, config, deadline))
    elif waiting_volume:
        progressing = cond("Progressing", "False" if deadline else "True", "WaitingForVolume",
                           volume_message(spec, waiting_volume[0], rolling and surge, deadline))
    elif deadline:
        progressing = cond("Progressing", "False", "ProgressDeadlineExceeded", deadline.get("message", ""))
    elif rolled_out:
        progressing = cond("Progressing", "False", "RolloutComplete", f"{ready}/{desired} replicas up to date")
    else:
        progressing = cond("Progressing", "True", "RollingOut",
                           f"{ready}/{desired} replicas ready, {updated} up to date")

    routed = router_status(model, router, ready)
    if problem and (problem.reason == "NameConflict" or ready == 0):
        phase, ready_cond = "Failed", cond("Ready", "False", problem.reason, problem.message)
    elif ready >= 1 and routed and not routed["readyRouters"]:
        phase, ready_cond = "Loading", cond("Ready", "False", "RouterNotReady",
                                            f"{ready}/{desired} replicas ready; waiting for the router "
                                            f"(Deployment {router_name(meta['name'])})")
    elif ready >= 1:
        phase = "Ready"
        ready_cond = cond("Ready", "True", "Serving", f"{ready}/{desired} replicas ready; serving at "
                                                      f"{endpoint(model, config)}")
    elif desired == 0 and wakes_on_request(spec):
        phase, ready_cond = "Idle", cond("Ready", "False", "ScaledToZero",
                                         "no replica runs while idle; the first request through the router wakes "
                                         "one (a cold start)")
    elif desired == 0:
        phase, ready_cond = "Pending", cond("Ready", "False", "ScaledToZero", "replicas is 0")
    elif failing:
        name, reason, message = failing[0]
        phase = "Failed"
        ready_cond = cond("Ready", "False", reason, f"pod {name}: {message}".rstrip(": "))
    elif deadline:
        phase, ready_cond = "Failed", cond("Ready", "False", "ProgressDeadlineExceeded", deadline.get("message", ""))
    elif unschedulable or not any(p["scheduled"] == "True" for p in live):
        # a pod the scheduler has not looked at yet has no PodScheduled condition: it is not loading anything
        phase = "Pending"
        ready_cond = cond("Ready", "False", "Unschedulable" if unschedulable else "WaitingForPods",
                          scheduled["message"])
    elif waiting_volume:
        phase = "Loading"
        ready_cond = cond("Ready", "False", "WaitingForVolume",
                          volume_message(spec, waiting_volume[0], rolling and surge, deadline))
    else:
        phase, ready_cond = "Loading", cond("Ready", "False", "Loading", "scheduled; loading weights")

    return {
        "phase": phase,
        "conditions": [ready_cond, progressing, scheduled],
        "replicas": replicas,
        "readyReplicas": ready,
        "readySummary": f"{ready}/{desired}",
        "selector": ",".join(f"{k}={v}" for k, v in selector(meta["name"]).items()),
        "endpoint": endpoint(model, config),
        "servedModelName": served_model_name(model),
        # routing switched off: null removes what an earlier status said (status is merge-patched)
        **({"routing": routed} if routed or (model.get("status") or {}).get("routing") else {}),
        **autoscaling_status(model),
        "observedGeneration": generation,
    }


def autoscaling_status(model: dict) -> dict:
    """status.autoscaling as far as the reconcile says it: the ScaledObject of a KEDA-scaled Model, nothing of an
    in-process one (its timer writes the decisions), null once autoscaling is gone."""
    scaling = spec_of(model).get("autoscaling")
    had = (model.get("status") or {}).get("autoscaling")
    if scaling and scaling.get("keda"):
        return {"autoscaling": {"scaledObject": model["metadata"]["name"], "metric": scaling["metric"]}}
    return {"autoscaling": None} if had and not scaling else {}


def waiting_for_gpu(spec: dict, unschedulable: list[dict], config: Config) -> list[dict]:
    """Pods the scheduler cannot place for want of the Model's GPU resource (its message names it as Insufficient)."""
    gpu = spec.get("gpuResourceName") or config.gpu_resource
    return [p for p in unschedulable if spec["gpus"] and f"Insufficient {gpu}" in p["scheduleMessage"]]


def waiting_for_volume(spec: dict, live: list[dict]) -> list[dict]:
    """Pods of a Model that mounts claims, placed on a node but waiting in ContainerCreating without a sandbox: the
    kubelet waits for their volumes to attach and mount. Why (FailedAttachVolume, Multi-Attach) is only in the
    pod's Events, which status does not read; the message names the likely cause."""
    if not claims(spec):
        return []
    return [p for p in live if p["scheduled"] == "True" and not p["ready"] and p.get("sandbox") == "False"
            and any(reason == "ContainerCreating" for reason, _ in p["waiting"])]


def _deadline_note(deadline: dict | None) -> str:
    return " The Deployment has passed its progress deadline." if deadline else ""


def gpu_message(spec: dict, pods: list[dict], ready: int, surge_rollout: bool, config: Config,
                deadline: dict | None) -> str:
    gpu = spec.get("gpuResourceName") or config.gpu_resource
    want = f"{spec['gpus']} free {gpu}"
    scheduler = f" Scheduler: {pods[0]['scheduleMessage']}"
    if surge_rollout and ready:
        return (f"{len(pods)} new replica(s) wait for {want} while {ready} old replica(s) keep serving. Without a "
                "spare GPU in the cluster, set spec.rollout.strategy: Replace to stop an old replica first (at the "
                "price of its capacity during the rollout)." + _deadline_note(deadline) + scheduler)
    return f"{len(pods)} replica(s) wait for {want} each." + _deadline_note(deadline) + scheduler


def volume_message(spec: dict, pod: dict, surge_rollout: bool, deadline: dict | None) -> str:
    since = f" since {pod['scheduledAt']}" if pod.get("scheduledAt") else ""
    fix = "use a ReadWriteMany claim" + (", or set spec.rollout.strategy: Replace (with replicas: 1)"
                                         if surge_rollout else "")
    return (f"new pod {pod['name']} waiting in ContainerCreating{since} for its volumes (claims "
            f"{', '.join(claims(spec))}). A ReadWriteOnce claim cannot attach to two nodes: if `kubectl describe pod "
            f"{pod['name']}` shows FailedAttachVolume (Multi-Attach), {fix}." + _deadline_note(deadline))


def status_changed(old: dict | None, new: dict) -> bool:
    """True when `new` says something `old` does not (lastTransitionTime follows status, so it is ignored)."""
    def strip(s):
        s = dict(s or {})
        s["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                           for c in s.get("conditions") or []]
        return {k: v for k, v in s.items() if k in new}
    return strip(old) != strip(new)


def phase_event_due(old: str | None, new: str, was_ready: bool) -> bool:
    """Events for what a person acts on: failing, leaving Ready, and coming back (to Ready after a failure, or after
    having left Ready). The routine way up of a new or changed Model (Pending, Loading, a first Ready) shows in status
    alone: in a burst of new Models, Events were a fifth of the operator's writes. `was_ready`: the Model has been
    Ready before."""
    if old == new:
        return False
    return new == "Failed" or old == "Ready" or (new == "Ready" and (was_ready or old == "Failed"))
