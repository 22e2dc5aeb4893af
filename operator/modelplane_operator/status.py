"""A Model's status, computed from what its children report. Pure: the same inputs give the same status, so the
operator writes status only when something a person would notice has changed."""

from __future__ import annotations

from typing import NamedTuple

from .config import Config
from .render import GENERATION_ANNOTATION, endpoint, selector, served_model_name, spec_of

# Container waiting reasons that will not fix themselves without a change to the Model or the cluster.
FAILING_REASONS = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                   "CreateContainerConfigError", "CreateContainerError", "Error", "OOMKilled", "ContainerCannotRun"}


def pod_summary(pod: dict) -> dict:
    """What status needs of a pod; kept small because the operator indexes every model pod."""
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    waiting = [(s["state"]["waiting"].get("reason", ""), s["state"]["waiting"].get("message", ""))
               for s in status.get("containerStatuses") or [] if (s.get("state") or {}).get("waiting")]
    # A container that exited with an error and has not been restarted yet fails the same way.
    waiting += [(t.get("reason") or "Error", t.get("message") or f"exit code {t.get('exitCode')}")
                for s in status.get("containerStatuses") or []
                for t in [(s.get("state") or {}).get("terminated")] if t and t.get("exitCode", 0) != 0]
    terminated = [(s["lastState"]["terminated"].get("reason", ""), s["lastState"]["terminated"].get("exitCode"))
                  for s in status.get("containerStatuses") or [] if (s.get("lastState") or {}).get("terminated")]
    return {
        "name": pod["metadata"]["name"],
        "deleting": bool(pod["metadata"].get("deletionTimestamp")),
        "scheduled": scheduled.get("status", "Unknown"),
        "scheduleReason": scheduled.get("reason", ""),
        "scheduleMessage": scheduled.get("message", ""),
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
                   problem: Problem | None = None) -> dict:
    """Status for `model` given its Deployment (or None), summaries of its pods, and why a child could not be
    written, if so. A refused change to a Model that still serves leaves it Ready (what runs keeps running) and says
    so in Progressing; with nothing serving it is Failed."""
    spec = spec_of(model)
    meta = model["metadata"]
    applied = ((deployment or {}).get("metadata") or {}).get("annotations", {}).get(GENERATION_ANNOTATION)
    generation = int(applied) if applied else meta.get("generation", 1)
    desired = spec["replicas"]
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
    elif deadline:
        progressing = cond("Progressing", "False", "ProgressDeadlineExceeded", deadline.get("message", ""))
    elif rolled_out:
        progressing = cond("Progressing", "False", "RolloutComplete", f"{ready}/{desired} replicas up to date")
    else:
        progressing = cond("Progressing", "True", "RollingOut",
                           f"{ready}/{desired} replicas ready, {updated} up to date")

    if problem and (problem.reason == "NameConflict" or ready == 0):
        phase, ready_cond = "Failed", cond("Ready", "False", problem.reason, problem.message)
    elif ready >= 1:
        phase = "Ready"
        ready_cond = cond("Ready", "True", "Serving", f"{ready}/{desired} replicas ready; serving at "
                                                      f"{endpoint(model, config)}")
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
        "observedGeneration": generation,
    }


def status_changed(old: dict | None, new: dict) -> bool:
    """True when `new` says something `old` does not (lastTransitionTime follows status, so it is ignored)."""
    def strip(s):
        s = dict(s or {})
        s["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                           for c in s.get("conditions") or []]
        return {k: v for k, v in s.items() if k in new}
    return strip(old) != strip(new)


def phase_event_due(old: str | None, new: str) -> bool:
    """Events for what a person acts on: reaching Ready, failing, and leaving Ready. The routine way up (Pending,
    Loading) shows in status alone, which spares the API server two writes per new Model."""
    return old != new and (new in ("Ready", "Failed") or old == "Ready")
