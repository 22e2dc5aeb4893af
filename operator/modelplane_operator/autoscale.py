"""How many server replicas a Model with spec.autoscaling should run, from a history of vLLM's own load signals.
Pure: samples in, a decision (replicas and why) out.

The rule: each sample's wanted count is ceil(load / target), within [max(minReplicas, 1), maxReplicas], where load
is the metric summed over the ready replicas. The Model scales up only when every sample of the last
scaleUpDelaySeconds wanted more than it runs (to the smallest of those counts), and down only when every sample of
the last scaleDownDelaySeconds wanted less (to the largest of them): a count must hold for the whole delay, so a
spike or a lull shorter than the delay changes nothing, and an up and a down can never follow each other within the
shorter delay. With minReplicas 0, a Model that has served no request for scaleToZeroAfterSeconds goes to 0, and the
first request its router receives at 0 wakes it to 1 at once."""

from __future__ import annotations

import dataclasses
import math

# spec.autoscaling.metric -> (vLLM's gauge, summed over the ready replicas; the default target per replica)
METRICS = {
    "requestsWaiting": ("vllm:num_requests_waiting", 2.0),
    "requestsRunning": ("vllm:num_requests_running", 8.0),
    "kvCacheUsage": ("vllm:kv_cache_usage_perc", 0.8),
}
REQUESTS_COUNTER = "vllm:request_success_total"  # requests served, for idleness
# requests the router received, and those it could not place (no replica): either wakes a Model at zero
ROUTER_REQUESTS = ("vllm_router_requests_total", "vllm_router_request_errors_total")


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float  # seconds (monotonic)
    load: float  # the metric summed over the ready replicas
    requests: float  # requests seen so far: served by the replicas plus received by the router (counters: a drop
    #                  is a restart, never idleness)


@dataclasses.dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str  # CamelCase, for status and Events: Steady, ScaleUp, ScaleDown, ScaleToZero, WakeUp, Clamped,
    #              MetricsUnavailable
    message: str


SILENCE = 20.0  # seconds of looks that a ready replica left unanswered before status says the load is unknown


def in_process(spec: dict | None) -> dict | None:
    """spec.autoscaling when the operator's own autoscaler runs it (not KEDA, which scales spec.replicas itself)."""
    scaling = (spec or {}).get("autoscaling")
    return scaling if scaling and not scaling.get("keda") else None


def wakes_on_request(spec: dict) -> bool:
    """A Model the operator's autoscaler takes to zero and wakes on the first request its router receives (KEDA's
    activation wakes its own Models, from Prometheus, which the operator does not see)."""
    scaling = in_process(spec)
    return bool(scaling) and scaling.get("minReplicas") == 0 and bool(spec.get("routing"))


def target_of(autoscaling: dict) -> float:
    return float(autoscaling.get("target") or METRICS[autoscaling["metric"]][1])


def wanted(load: float, autoscaling: dict) -> int:
    low = max(int(autoscaling["minReplicas"]), 1)
    return min(max(math.ceil(round(load / target_of(autoscaling), 6)), low), int(autoscaling["maxReplicas"]))


def window(history: list[Sample], now: float, seconds: float) -> list[Sample] | None:
    """The samples of the last `seconds`, or None when the history does not yet cover that long."""
    if not history or history[0].at > now - seconds:
        return None
    return [s for s in history if s.at >= now - seconds] or [history[-1]]


def decide(autoscaling: dict, history: list[Sample], current: int, now: float, ready: int | None = None) -> Decision:
    """The replica count for a Model running `current` replicas (its Deployment's spec), samples oldest first.
    `ready`: how many of them are ready; while fewer than `current` are (a replica being added or replaced), none is
    removed: the load the ready ones report is not yet spread over the new one."""
    low, high = int(autoscaling["minReplicas"]), int(autoscaling["maxReplicas"])
    metric = autoscaling["metric"]
    if not history:
        return Decision(min(max(current, low), high), "Steady", "no samples yet")
    last = history[-1]
    if current == 0:
        if low > 0:
            return Decision(low, "Clamped", f"minReplicas is {low}")
        if len(history) > 1 and last.requests > history[-2].requests:
            return Decision(1, "WakeUp", "a request arrived while at zero replicas")
        return Decision(0, "Steady", "idle at zero replicas")
    if current < max(low, 1) or current > high:
        bounded = min(max(current, max(low, 1)), high)
        return Decision(bounded, "Clamped", f"within minReplicas {low} and maxReplicas {high}")
    settling = ready is not None and ready < current
    if low == 0 and not settling:
        idle = window(history, now, float(autoscaling["scaleToZeroAfterSeconds"]))
        if idle and idle[-1].requests == idle[0].requests and all(s.load == 0 for s in idle):
            return Decision(0, "ScaleToZero", f"no request for {autoscaling['scaleToZeroAfterSeconds']}s")
    up = window(history, now, float(autoscaling["scaleUpDelaySeconds"]))
    if up and min(wanted(s.load, autoscaling) for s in up) > current:
        to = min(wanted(s.load, autoscaling) for s in up)
        return Decision(to, "ScaleUp", f"{metric} {last.load:g} over {current} replica(s), target "
                                       f"{target_of(autoscaling):g} each, for {autoscaling['scaleUpDelaySeconds']}s")
    down = window(history, now, float(autoscaling["scaleDownDelaySeconds"]))
    if settling:
        return Decision(current, "Steady", f"{ready} of {current} replica(s) ready: none is removed until all are")
    if down and max(wanted(s.load, autoscaling) for s in down) < current:
        to = max(wanted(s.load, autoscaling) for s in down)
        return Decision(to, "ScaleDown", f"{metric} at most {max(s.load for s in down):g} over "
                                         f"{autoscaling['scaleDownDelaySeconds']}s, target "
                                         f"{target_of(autoscaling):g} each")
    return Decision(current, "Steady", f"{metric} {last.load:g} over {current} replica(s), target "
                                       f"{target_of(autoscaling):g} each")


def unanswered(decision: Decision, silent: int, silent_for: float) -> Decision:
    """A steady decision, while `silent` ready replicas have left every look of the last `silent_for` seconds
    unanswered, says so once that lasts SILENCE seconds: the load is unknown (a NetworkPolicy that keeps the operator
    out, or servers too busy to answer), so the count is kept, and a person should know why nothing scales."""
    if decision.reason != "Steady" or silent == 0 or silent_for < SILENCE:
        return decision
    return Decision(decision.replicas, "MetricsUnavailable",
                    f"{silent} ready replica(s) have not answered the operator's GET /metrics for {silent_for:.0f}s "
                    f"(a NetworkPolicy must admit the operator's pods): the load is unknown, {decision.replicas} "
                    f"replica(s) kept")


def sum_metric(text: str, name: str) -> float:
    """The sum of every sample of metric `name` in a Prometheus text exposition (0 when it is absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total


def keep(history: list[Sample], now: float, autoscaling: dict) -> list[Sample]:
    """The samples any rule may still read (the longest delay, and one sample older, which proves coverage)."""
    longest = max(float(autoscaling[k]) for k in ("scaleUpDelaySeconds", "scaleDownDelaySeconds",
                                                  "scaleToZeroAfterSeconds"))
    older = [s for s in history if s.at < now - longest]
    return older[-1:] + [s for s in history if s.at >= now - longest]
