"""spec.routing against the real control plane (kwok nodes): the router's objects are written, its pods run, status
says so, and switching routing off deletes them and points the Service back at the server pods. The router itself
serving real requests is tests/node/test_node_routing.py."""

from __future__ import annotations

import pytest

import builders

pytestmark = pytest.mark.integration
ROUTER_OBJECTS = [("deployment", "m-router"), ("serviceaccount", "m-router"), ("role", "m-router"),
                  ("rolebinding", "m-router"), ("service", "m-vllm")]


def routing_of(kube, namespace):
    return ((kube.get("model", "m", namespace) or {}).get("status") or {}).get("routing")


def test_routing_on_then_off(kube, operator, namespace):
    kube.apply(builders.model("m", namespace, routing={"policy": "round_robin"}))
    routed = kube.wait_for(lambda: (r := routing_of(kube, namespace)) and r["readyRouters"] == 1 and
                           r["routedReplicas"] == 1 and r, timeout=90, what="the router ready, routing to 1 replica")
    assert routed["policy"] == "round_robin"
    assert kube.get("model", "m", namespace)["status"]["phase"] == "Ready"
    for kind, name in ROUTER_OBJECTS:
        obj = kube.get(kind, name, namespace)
        assert obj and obj["metadata"]["ownerReferences"][0]["name"] == "m", (kind, name)
    assert kube.get("service", "m", namespace)["spec"]["selector"] == {"modelplane.dev/router": "m"}
    router = kube.get("deployment", "m-router", namespace)
    assert "--policy" in (args := router["spec"]["template"]["spec"]["containers"][0]["args"])
    assert args[args.index("--policy") + 1] == "round_robin"

    kube.run("patch", "model", "m", "-n", namespace, "--type=json", "-p", '[{"op":"remove","path":"/spec/routing"}]')
    kube.wait_for(lambda: not any(kube.get(kind, name, namespace) for kind, name in ROUTER_OBJECTS), timeout=60,
                  what="the router's objects deleted")
    assert kube.get("service", "m", namespace)["spec"]["selector"] == {"modelplane.dev/model": "m"}
    kube.wait_for(lambda: "routing" not in (kube.get("model", "m", namespace).get("status") or {}), timeout=30,
                  what="status.routing gone")
    reasons = kube.run("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=m",
                       "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "Deleted" in reasons, reasons


def test_a_router_name_taken_by_another_model_is_a_clear_problem(kube, operator, namespace):
    """Model `m-router` already owns the Deployment that routing `m` would write: m says so, and never takes it."""
    kube.apply(builders.model("m-router", namespace))
    kube.wait_for(lambda: kube.get("deployment", "m-router", namespace), what="m-router's Deployment")
    kube.apply(builders.model("m", namespace, routing={}))

    def conflict():
        model = kube.get("model", "m", namespace) or {}
        progressing = next((c for c in (model.get("status") or {}).get("conditions") or []
                            if c["type"] == "Progressing"), {})
        return progressing if progressing.get("reason") == "NameConflict" else None
    progressing = kube.wait_for(conflict, timeout=60, what="m's NameConflict")
    assert f"Deployment {namespace}/m-router already exists" in progressing["message"]
    owner = kube.get("deployment", "m-router", namespace)["metadata"]["ownerReferences"][0]["name"]
    assert owner == "m-router"  # never taken over


@pytest.mark.parametrize("autoscaling, words", [
    ({"minReplicas": 0, "maxReplicas": 2}, "needs spec.routing"),
    ({"minReplicas": 3, "maxReplicas": 2}, "minReplicas must not exceed maxReplicas"),
    ({"maxReplicas": 2, "metric": "kvCacheUsage", "target": 1.5}, "at most 1"),
])
def test_autoscaling_refused_at_admission(kube, namespace, autoscaling, words):
    proc = kube.apply(builders.model("bad", namespace, autoscaling=autoscaling), check=False)
    assert proc.returncode != 0 and words in proc.stderr, proc.stderr


def test_an_autoscaled_model_reports_its_autoscaler(kube, operator, namespace):
    """The timer runs against the real API server. kwok's ready pods serve no /metrics (as pods a NetworkPolicy
    keeps the operator from would not), so the load is unknown: status and a Warning Event say so and the count is
    kept (the rule itself is tests/unit/test_autoscale.py, scaling on real load tests/node)."""
    kube.apply(builders.model("auto", namespace, replicas=2, autoscaling={"minReplicas": 1, "maxReplicas": 3}))
    status = kube.wait_for(lambda: ((kube.get("model", "auto", namespace) or {}).get("status") or {}).get(
        "autoscaling"), timeout=60, what="status.autoscaling")
    assert status["metric"] == "requestsWaiting" and status["desiredReplicas"] == 2, status

    def unavailable():
        status = kube.get("model", "auto", namespace)["status"]["autoscaling"]
        return status if status["reason"] == "MetricsUnavailable" else None
    status = kube.wait_for(unavailable, timeout=120, what="status.autoscaling.reason MetricsUnavailable")
    assert status["desiredReplicas"] == 2 and "load" not in status, status
    assert "2 ready replica(s) have not answered" in status["message"], status
    assert kube.get("deployment", "auto", namespace)["spec"]["replicas"] == 2
    events = kube.run("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=auto,type=Warning",
                      "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert "MetricsUnavailable" in events, events


def keda_crd() -> str:
    """KEDA's own ScaledObject CRD, from its Go module (KEDA_VERSION in hack/versions.env; the Go module cache keeps
    it), so what the operator renders is checked against the schema KEDA publishes."""
    import json as _json
    import os
    import subprocess
    from pathlib import Path

    versions = dict(line.split("=", 1) for line in (Path(__file__).resolve().parents[2] / "hack" / "versions.env")
                    .read_text().splitlines() if line and not line.startswith("#"))
    out = subprocess.run(["go", "mod", "download", "-json", f"github.com/kedacore/keda/v2@{versions['KEDA_VERSION']}"],
                         capture_output=True, text=True, timeout=600, cwd="/",
                         env={**os.environ, "GOFLAGS": "-mod=mod"})
    assert out.returncode == 0, out.stdout + out.stderr
    return str(Path(_json.loads(out.stdout)["Dir"]) / "config" / "crd" / "bases" / "keda.sh_scaledobjects.yaml")


def test_keda_scaled_object_passes_kedas_own_schema(kube, operator, namespace):
    from modelplane_operator.config import Config
    from modelplane_operator.render import render_children
    from modelplane_operator.sync import is_subset

    kube.install_crds(keda_crd())
    model = builders.model("k", namespace, autoscaling={
        "minReplicas": 0, "maxReplicas": 3, "keda": {"prometheusAddress": "http://prometheus.monitoring:9090"}})
    kube.apply(model)
    scaled = kube.wait_for(lambda: kube.get("scaledobject", "k", namespace), timeout=60, what="the ScaledObject")
    stored = kube.get("model", "k", namespace)
    [rendered] = [c for c in render_children(stored, Config()) if c["kind"] == "ScaledObject"]
    # applied with fieldValidation=Strict: an unknown field would have been refused; nothing was pruned either
    assert is_subset(rendered["spec"], scaled["spec"]), scaled["spec"]
    assert scaled["metadata"]["ownerReferences"][0]["name"] == "k"
    kube.wait_for(lambda: ((kube.get("model", "k", namespace).get("status") or {}).get("autoscaling") or {}).get(
        "scaledObject") == "k", timeout=30, what="status.autoscaling.scaledObject")
    # KEDA scales the Model through its scale subresource; the Deployment follows spec.replicas
    kube.run("scale", "model", "k", "-n", namespace, "--replicas=2")
    kube.wait_for(lambda: kube.get("deployment", "k", namespace)["spec"]["replicas"] == 2, timeout=30,
                  what="the Deployment at 2")

    kube.run("patch", "model", "k", "-n", namespace, "--type=json", "-p",
             '[{"op":"remove","path":"/spec/autoscaling/keda"}, {"op":"replace","path":"/spec/autoscaling/minReplicas",'
             '"value":1}]')
    kube.wait_for(lambda: kube.get("scaledobject", "k", namespace) is None, timeout=60, what="the ScaledObject gone")
