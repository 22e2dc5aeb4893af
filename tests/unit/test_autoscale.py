"""The autoscaling rule as a table: a signal history in, replicas (and why) out. Pure."""

from __future__ import annotations

import pytest

from modelplane_operator import autoscale
from modelplane_operator.autoscale import Sample, decide, keep, sum_metric, wanted
from modelplane_operator.crd import model_spec_with_defaults


def policy(**autoscaling) -> dict:
    spec = {"source": "hf://a/b", "routing": {}, "autoscaling": {"maxReplicas": 4, **autoscaling}}
    return model_spec_with_defaults(spec)["autoscaling"]


def history(*loads, every=10.0, requests=None) -> list[Sample]:
    """Samples `every` seconds apart, the last at t=1000; requests: one count per sample (default: growing)."""
    n = len(loads)
    counts = requests or [float(i) for i in range(n)]
    return [Sample(1000.0 - every * (n - 1 - i), float(load), float(counts[i])) for i, load in enumerate(loads)]


NOW = 1000.0
UP30_DOWN60 = dict(scaleUpDelaySeconds=30, scaleDownDelaySeconds=60)


@pytest.mark.parametrize("loads, current, expected, reason", [
    # requestsWaiting, target 2 per replica, up after 30 s, down after 60 s
    ([0, 0, 0, 0, 0, 0, 0, 0], 1, 1, "Steady"),
    ([5, 5, 5, 5], 1, 3, "ScaleUp"),                 # 5 waiting over 30 s: ceil(5/2) = 3
    ([0, 0, 5, 5], 1, 1, "Steady"),                  # only 20 s of it: a spike shorter than the delay
    ([5, 3, 9, 5], 1, 2, "ScaleUp"),                 # to the smallest count wanted throughout (3 -> 2)
    ([20, 20, 20, 20], 1, 4, "ScaleUp"),             # at most maxReplicas
    ([5, 5, 5], 1, 1, "Steady"),                     # the history covers 20 s only: not yet
    ([0, 0, 0, 0, 0, 0, 0], 3, 1, "ScaleDown"),      # 60 s without load: to minReplicas
    ([3, 0, 0, 0, 0, 0, 0], 3, 2, "ScaleDown"),      # to the largest count wanted in the window (3 -> 2)
    ([0, 0, 0, 0, 0, 9, 0], 3, 3, "Steady"),         # a burst inside the window keeps them
    ([0, 0, 0, 0, 0], 3, 3, "Steady"),               # 40 s of lull: shorter than the down delay
    ([0, 0, 0, 0, 0, 0, 0], 6, 4, "Clamped"),        # above maxReplicas (the spec was lowered): at once
])
def test_the_rule(loads, current, expected, reason):
    decision = decide(policy(**UP30_DOWN60), history(*loads), current, NOW)
    assert (decision.replicas, decision.reason) == (expected, reason), decision


def test_it_does_not_flap_under_a_load_that_comes_and_goes():
    """Load alternating every 10 s between needing 3 replicas and none: never held for a whole delay, no change."""
    p = policy(**UP30_DOWN60)
    replicas, changes = 1, 0
    samples: list[Sample] = []
    for step in range(60):
        now = step * 10.0
        samples = keep(samples + [Sample(now, 6.0 if step % 2 else 0.0, float(step))], now, p)
        decision = decide(p, samples, replicas, now)
        changes += decision.replicas != replicas
        replicas = decision.replicas
    assert changes == 0 and replicas == 1


@pytest.mark.parametrize("metric, loads, current, expected", [
    ("requestsRunning", [17, 17, 17, 17], 1, 3),   # default target 8 running per replica
    ("kvCacheUsage", [1.5, 1.5, 1.5, 1.5], 1, 2),  # 0.8 of each replica's cache: ceil(1.5/0.8) = 2
    ("kvCacheUsage", [1.6, 1.6, 1.6, 1.6], 1, 2),  # exactly 2 replicas' worth stays at 2 (no float error)
])
def test_metrics_and_their_default_targets(metric, loads, current, expected):
    assert decide(policy(metric=metric, **UP30_DOWN60), history(*loads), current, NOW).replicas == expected


def test_an_explicit_target():
    assert wanted(10.0, policy(target=5)) == 2 and wanted(10.0, policy(target=1)) == 4


ZERO = dict(minReplicas=0, scaleToZeroAfterSeconds=60, **UP30_DOWN60)


@pytest.mark.parametrize("loads, requests, current, expected, reason", [
    ([0] * 7, [4] * 7, 1, 0, "ScaleToZero"),               # 60 s without a request
    ([0] * 7, [4, 4, 4, 4, 4, 4, 5], 1, 1, "Steady"),      # one request in the window keeps the replica
    ([0] * 5, [4] * 5, 1, 1, "Steady"),                    # 40 s idle: not yet
    ([0, 0], [4, 5], 0, 1, "WakeUp"),                      # a request reached the router at zero: at once
    ([0, 0], [4, 4], 0, 0, "Steady"),
    ([0, 0], [9, 2], 0, 0, "Steady"),                      # a counter that dropped (a restart) is no request
])
def test_scale_to_zero_and_back(loads, requests, current, expected, reason):
    decision = decide(policy(**ZERO), history(*loads, requests=requests), current, NOW)
    assert (decision.replicas, decision.reason) == (expected, reason), decision


def test_without_samples_the_count_stays_within_bounds():
    assert decide(policy(minReplicas=2), [], 1, NOW).replicas == 2
    assert decide(policy(**ZERO), [], 0, NOW).replicas == 0
    assert decide(policy(minReplicas=2), [], 0, NOW).reason == "Steady"


def test_keep_holds_what_the_longest_delay_needs_and_one_older_sample():
    p = policy(**ZERO)
    samples = [Sample(t, 0.0, 0.0) for t in range(0, 200, 10)]
    kept = keep(samples, 190.0, p)
    assert kept[0].at == 120.0 and kept[-1].at == 190.0  # 60 s back from 190 is 130; 120 proves coverage


def test_sum_metric_reads_prometheus_text():
    text = """# HELP vllm:num_requests_waiting Number of requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 3.0
vllm:num_requests_waiting_by_reason{reason="x"} 7.0
vllm:request_success_total{finished_reason="stop",model_name="tiny"} 4.0
vllm:request_success_total{finished_reason="length",model_name="tiny"} 6.0
"""
    assert sum_metric(text, "vllm:num_requests_waiting") == 3.0
    assert sum_metric(text, "vllm:request_success_total") == 10.0
    assert sum_metric(text, "vllm:absent") == 0.0


@pytest.mark.parametrize("replicas, decided, expected", [
    (1, None, 1),    # until the autoscaler has decided: spec.replicas
    (1, 3, 3),       # then its decision
    (1, 9, 4),       # within maxReplicas (the spec was lowered since)
    (0, None, 1),    # within minReplicas
])
def test_the_deployment_runs_what_the_autoscaler_decided(replicas, decided, expected):
    from modelplane_operator.config import Config
    from modelplane_operator.render import render_deployment, server_replicas

    model = {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
             "spec": {"source": "hf://a/b", "replicas": replicas, "autoscaling": {"maxReplicas": 4}},
             "status": {"autoscaling": {"desiredReplicas": decided}} if decided is not None else {}}
    assert server_replicas(model) == expected
    assert render_deployment(model, Config())["spec"]["replicas"] == expected
    plain = {**model, "spec": {"source": "hf://a/b", "replicas": replicas}}
    assert server_replicas(plain) == replicas  # without autoscaling, status is not read


def keda_model(**autoscaling) -> dict:
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"source": "hf://a/b", "replicas": 3, "servedModelName": "qwen", "autoscaling": {
                "maxReplicas": 5, "minReplicas": 0, "keda": {"prometheusAddress": "http://prom.monitoring:9090"},
                **autoscaling}},
            "status": {"autoscaling": {"desiredReplicas": 1}}}


def test_keda_scales_the_model_with_the_same_signal_target_and_delays():
    from modelplane_operator.config import Config
    from modelplane_operator.render import render_children, server_replicas

    model = keda_model(metric="kvCacheUsage", scaleUpDelaySeconds=15, scaleDownDelaySeconds=120)
    [scaled] = [c for c in render_children(model, Config()) if c["kind"] == "ScaledObject"]
    spec = scaled["spec"]
    assert scaled["metadata"]["name"] == "m" and scaled["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert spec["scaleTargetRef"] == {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "name": "m"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 5, 600)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 15
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 120
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "0.8"
    assert trigger["metadata"]["query"] == 'sum(vllm:kv_cache_usage_perc{namespace="ns",model_name="qwen"})'
    assert server_replicas(model) == 3  # KEDA writes spec.replicas; status is not read


def test_a_keda_model_says_which_scaled_object_scales_it():
    from modelplane_operator.status import autoscaling_status

    assert autoscaling_status(keda_model()) == {"autoscaling": {"scaledObject": "m", "metric": "requestsWaiting"}}
    gone = {**keda_model(), "spec": {"source": "hf://a/b"}}
    assert autoscaling_status(gone) == {"autoscaling": None}  # null removes it (merge patch)
    in_process = keda_model()
    del in_process["spec"]["autoscaling"]["keda"]
    assert autoscaling_status(in_process) == {}  # the timer writes it


@pytest.mark.parametrize("loads, current, ready, expected, reason", [
    ([0] * 7, 2, 1, 2, "Steady"),       # a replica being added: the lull on the ready one removes nothing yet
    ([0] * 7, 2, 2, 1, "ScaleDown"),    # all ready: the same lull scales down
    ([9] * 4, 2, 1, 4, "ScaleUp"),      # more can still be added meanwhile
])
def test_no_replica_is_removed_while_one_being_added_is_not_ready(loads, current, ready, expected, reason):
    decision = decide(policy(**UP30_DOWN60), history(*loads), current, NOW, ready=ready)
    assert (decision.replicas, decision.reason) == (expected, reason), decision


def test_a_look_a_busy_replica_did_not_answer_is_left_out(monkeypatch):
    from modelplane_operator import autoscaler, podget

    monkeypatch.setattr(podget, "get_text", lambda url: None if "10.0.0.2" in url else
                        'vllm:num_requests_waiting{m="x"} 3\nvllm:request_success_total{m="x"} 7\n')
    model = {"metadata": {"name": "m", "namespace": "ns", "uid": "u-look"},
             "spec": {"source": "hf://a/b", "autoscaling": {"maxReplicas": 4}}}
    one = [{"ready": True, "deleting": False, "ip": "10.0.0.1"}]
    two = one + [{"ready": True, "deleting": False, "ip": "10.0.0.2"}]
    assert autoscaler.sample(model, one, 5.0) == (autoscale.Sample(5.0, 3.0, 7.0), 0)
    assert autoscaler.sample(model, two, 5.0) == (None, 1)  # not "zero load"
    decision, taken = autoscaler.look(model, two, 2, now=5.0)
    assert taken is None and autoscaler._history.get("u-look") == [] and decision.reason == "Steady"
    # still unanswered SILENCE seconds later: status says the load is unknown, and the count is kept
    decision, _ = autoscaler.look(model, two, 2, now=5.0 + autoscale.SILENCE)
    assert (decision.replicas, decision.reason) == (2, "MetricsUnavailable"), decision
    assert "1 ready replica(s) have not answered" in decision.message and "NetworkPolicy" in decision.message
    # one answered look ends the silence
    decision, taken = autoscaler.look(model, one, 2, now=6.0 + autoscale.SILENCE)
    assert taken is not None and decision.reason != "MetricsUnavailable"
    autoscaler.forget("u-look")


@pytest.mark.parametrize("reason, silent, silent_for, expected", [
    ("Steady", 2, autoscale.SILENCE, "MetricsUnavailable"),
    ("Steady", 2, autoscale.SILENCE - 1, "Steady"),   # one late answer is a busy server, not a blocked one
    ("Steady", 0, 300.0, "Steady"),
    ("ScaleDown", 1, 300.0, "ScaleDown"),             # a decision from the samples still in the window stands
])
def test_a_long_silence_is_reported_not_read_as_load(reason, silent, silent_for, expected):
    decision = autoscale.unanswered(autoscale.Decision(3, reason, "m"), silent, silent_for)
    assert (decision.replicas, decision.reason) == (3, expected)
