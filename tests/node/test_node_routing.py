"""spec.routing on the real node: vllm-router (its own image) in front of two real vLLM replicas, as the operator
renders it. Agent-like conversations from a pod keep to one replica through the router, and hit the prefix cache more
often than the same conversations through the plain Service; the Model's API key stays enforced through the router."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import bind_weights, get_json
from harness import temporary_namespace
from localvllm import TEST_API_KEY

pytestmark = pytest.mark.timeout(1200)
HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[1] / "bench" / "results"


def routed_model(ns: str) -> dict:
    """The tiny model, two replicas of 500m each (the node has two cores), keyed, behind the router."""
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": "routed", "namespace": ns},
            "spec": {"source": "pvc://weights/tiny", "gpus": 0, "replicas": 2,
                     "engineArgs": {"maxModelLen": 512}, "resources": {"requests": {"cpu": "500m"}},
                     "apiKeySecretRef": {"name": "routed-key"}, "routing": {}}}


def test_conversations_keep_to_a_replica_through_the_router(kube, operator, weights_pv):
    with temporary_namespace(kube, "route") as ns:
        bind_weights(kube, ns, weights_pv)
        kube.run("create", "secret", "generic", "routed-key", "-n", ns, f"--from-literal=api-key={TEST_API_KEY}")
        start = time.monotonic()
        kube.apply(routed_model(ns))

        def routed():
            status = (kube.get("model", "routed", ns) or {}).get("status") or {}
            return status if (status.get("routing") or {}).get("routedReplicas") == 2 else None
        status = kube.wait_for(routed, timeout=600, interval=2, what="routed Ready with 2 replicas behind its router")
        ready_s = time.monotonic() - start
        assert status["phase"] == "Ready" and status["routing"] == {"policy": "cache_aware", "readyRouters": 1,
                                                                     "routedReplicas": 2}, status
        assert status["endpoint"] == f"http://routed.{ns}.svc.cluster.local:8000/v1"  # unchanged by routing
        router_pod = get_json(kube, "pods", "-n", ns, "-l", "modelplane.dev/router=routed")["items"][0]
        assert router_pod["status"]["containerStatuses"][0]["restartCount"] == 0
        servers = get_json(kube, "pods", "-n", ns, "-l", "modelplane.dev/model=routed")["items"]
        assert len(servers) == 2 and all(p["status"].get("podIP") for p in servers)

        client = HERE / "routing_client.py"
        env = {"ROUTER_URL": f"http://routed.{ns}.svc.cluster.local:8000/v1",
               "DIRECT_URL": f"http://routed-vllm.{ns}.svc.cluster.local:8000/v1", "MODEL": "routed",
               "SERVER_PODS": ",".join(p["status"]["podIP"] for p in servers),
               "ROUTER_POD": router_pod["status"]["podIP"]}
        kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": ns},
                    "spec": {"restartPolicy": "Never", "containers": [{
                        "name": "client", "image": "modelplane-agent:0.1.0", "command": ["python", "-c",
                                                                                      client.read_text()],
                        "env": [*({"name": k, "value": v} for k, v in env.items()),
                                {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "routed-key",
                                                                                   "key": "api-key"}}}]}]}})
        def finished():
            phase = ((kube.get("pod", "client", ns) or {}).get("status") or {}).get("phase")
            return kube.run("logs", "client", "-n", ns, check=False).stdout if phase in ("Succeeded", "Failed") \
                else None
        logs = kube.wait_for(finished, timeout=600, interval=3, what="the client pod's result")
        line = next((ln for ln in logs.splitlines() if ln.startswith("RESULT ")), None)
        assert line, logs[-3000:]
        result = json.loads(line[len("RESULT "):])
        router, direct = result["router"], result["direct"]
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "real-node-routing.json").write_text(json.dumps({"apply_to_routed_ready_s": round(ready_s, 1),
                                                                    **result}, indent=2))
        print(f"prefix cache hit rate: router {router['hit_rate']}, plain Service {direct['hit_rate']}; "
              f"replicas by conversation and turn via the router {router['placements']}, via the Service "
              f"{direct['placements']}; router decisions {result['router_decisions']}")
        # every request was served once, and through the router each conversation kept to one replica
        for conversation in router["placements"] + direct["placements"]:
            assert len(conversation) == 4, result
        for conversation in router["placements"]:
            assert len(set(conversation)) == 1, router["placements"]
        # by prefix: the router tokenized every request through vLLM's render endpoint and matched its prefix
        decisions = result["router_decisions"]
        assert decisions.get("prefix_hit", 0) >= 12 and not decisions.get("missing_tokens"), decisions
        assert router["hit_rate"] > direct["hit_rate"], result
        assert (result["no_key"], result["wrong_key"], result["with_key"]) == (401, 401, 200), result
        assert result["add_worker"] == 403, result
