"""The in-process autoscaler of Models with spec.autoscaling: every INTERVAL seconds it reads vLLM's load signal from
each ready server pod's /metrics (and, for a Model that may go to zero, its router's request count), keeps the
history the rule needs (autoscale.py) and hands back a decision. The replica count it decides is written to
status.autoscaling.desiredReplicas, from which the Deployment is rendered (render.server_replicas)."""

from __future__ import annotations

import time

from . import autoscale, kube
from .config import SERVER_PORT
from .keys import ROUTER_LABEL
from .model import spec_of
from .podget import get_all, get_text, serving
from .routing import METRICS_PORT as ROUTER_METRICS_PORT

INTERVAL = 10.0  # seconds between two looks at a Model's replicas

_history: dict[str, list[autoscale.Sample]] = {}  # Model uid -> its samples, oldest first
_silent_since: dict[str, float] = {}  # Model uid -> when its looks began to go unanswered (until one is answered)


def forget(uid: str) -> None:
    _history.pop(uid, None)
    _silent_since.pop(uid, None)


def router_requests(namespace: str, name: str) -> float:
    """Requests the Model's routers have received (their counters summed); 0 when none answers."""
    pods = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods",
                        query={"labelSelector": f"{ROUTER_LABEL}={name}"}).get("items", [])
    total = 0.0
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        text = get_text(f"http://{ip}:{ROUTER_METRICS_PORT}/metrics") if ip else None
        if text:
            total += sum(autoscale.sum_metric(text, name) for name in autoscale.ROUTER_REQUESTS)
    return total


def sample(model: dict, pods: list[dict], now: float) -> tuple[autoscale.Sample | None, int]:
    """One look: the metric summed over the ready server pods and the requests seen, and how many ready pods did not
    answer; no sample when one did not (a busy server's silence is not zero load: the look is left out)."""
    scaling = spec_of(model)["autoscaling"]
    gauge = autoscale.METRICS[scaling["metric"]][0]
    texts = get_all([f"http://{pod['ip']}:{SERVER_PORT}/metrics" for pod in serving(pods) if pod.get("ip")])
    silent = texts.count(None)
    if silent:
        return None, silent
    load = sum(autoscale.sum_metric(text, gauge) for text in texts)
    requests = sum(autoscale.sum_metric(text, autoscale.REQUESTS_COUNTER) for text in texts)
    if scaling["minReplicas"] == 0:
        meta = model["metadata"]
        requests += router_requests(meta["namespace"], meta["name"])
    return autoscale.Sample(now, load, requests), 0


def look(model: dict, pods: list[dict], current: int,
         now: float | None = None) -> tuple[autoscale.Decision, autoscale.Sample | None]:
    """Take a sample and decide; `current` is the replica count now rendered. (The decision, the sample or None.)"""
    now = time.monotonic() if now is None else now
    scaling = spec_of(model)["autoscaling"]
    uid = model["metadata"]["uid"]
    taken, silent = sample(model, pods, now)
    history = autoscale.keep(_history.get(uid, []) + ([taken] if taken else []), now, scaling)
    _history[uid] = history
    since = _silent_since.setdefault(uid, now) if silent else _silent_since.pop(uid, now)
    decision = autoscale.decide(scaling, history, current, now, len(serving(pods)))
    return autoscale.unanswered(decision, silent, now - since), taken
