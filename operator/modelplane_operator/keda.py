"""A Model's KEDA ScaledObject (spec.autoscaling.keda): the same signal, target and delays as the in-process
autoscaler, read from the cluster's Prometheus by KEDA instead. Pure.

KEDA scales the Model itself through its scale subresource (spec.replicas), never its Deployment, which the operator
renders from spec.replicas: one writer of each field. The in-process autoscaler does not run for such a Model."""

from __future__ import annotations

from .autoscale import METRICS, target_of
from .config import GROUP, VERSION
from .model import served_model_name, spec_of

API_VERSION = "keda.sh/v1alpha1"
KEY = ("ScaledObject", None)  # its name is the Model's


def keda_of(model: dict) -> dict | None:
    return (spec_of(model).get("autoscaling") or {}).get("keda")


def query(model: dict) -> str:
    """PromQL: the Model's signal summed over its replicas (vLLM labels its metrics with the served model name; the
    namespace label is the one Prometheus' Kubernetes pod discovery adds)."""
    gauge = METRICS[spec_of(model)["autoscaling"]["metric"]][0]
    meta = model["metadata"]
    return f'sum({gauge}{{namespace="{meta["namespace"]}",model_name="{served_model_name(model)}"}})'


def render_scaled_object(model: dict, metadata: dict) -> dict:
    """`metadata`: the Model's child metadata (name, namespace, labels, owner reference)."""
    scaling = spec_of(model)["autoscaling"]
    keda = scaling["keda"]
    meta = model["metadata"]
    trigger = {"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": keda["prometheusAddress"], "query": query(model),
        "threshold": f"{target_of(scaling):g}",
        # at zero replicas, any load at all wakes the Model (KEDA's activation)
        "activationThreshold": "0"}}
    return {
        "apiVersion": API_VERSION, "kind": "ScaledObject", "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "name": meta["name"]},
            "minReplicaCount": scaling["minReplicas"], "maxReplicaCount": scaling["maxReplicas"],
            "pollingInterval": 10,
            "cooldownPeriod": scaling["scaleToZeroAfterSeconds"],
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleUp": {"stabilizationWindowSeconds": scaling["scaleUpDelaySeconds"]},
                "scaleDown": {"stabilizationWindowSeconds": scaling["scaleDownDelaySeconds"]}}}},
            "triggers": [trigger],
        },
    }
