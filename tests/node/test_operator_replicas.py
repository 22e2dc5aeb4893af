"""The operator from its chart with two replicas, restarted while pods are being created: every pod is admitted with
its configuration, and the namespace's ConfigMap never loses a Model. (Each replica answers admissions from a Model
cache of its own once it is synced; the webhook Service routes to ready replicas only; a stopping replica keeps
serving while its endpoint is withdrawn.)"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from conftest import OPERATOR_NS, REPO, RELEASE, get_json, helm

# The first test here also starts the shared real-node cluster (and imports the vLLM image into a fresh
# containerd: minutes), inside its time limit.
pytestmark = pytest.mark.timeout(1800)

SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator"


@pytest.fixture
def two_replicas(kube, operator):
    chart = str(REPO / "charts" / "modelplane")
    helm(kube, "upgrade", RELEASE, chart, "-n", OPERATOR_NS, "--reuse-values", "--set", "replicas=2", "--wait",
         "--timeout", "5m")
    yield
    helm(kube, "upgrade", RELEASE, chart, "-n", OPERATOR_NS, "--reuse-values", "--set", "replicas=1", "--wait",
         "--timeout", "5m")


def gpu_model(name: str) -> dict:
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": name},
            "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 1}}


def waiting_pod(name: str) -> dict:
    """Only its admission matters: it never gets a node."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {"modelplane.dev/test": "nowhere"},
                     "containers": [{"name": "app", "image": "docker.io/library/modelplane-agent:0.1.0"}]}}


def test_pods_keep_their_configuration_through_operator_restarts(kube, two_replicas, namespace):
    for name in ("first", "second"):
        kube.run("apply", "-n", namespace, "-f", "-", input=json.dumps(gpu_model(name)))
    kube.run("label", "namespace", namespace, "modelplane.dev/inject=enabled")
    kube.run("apply", "-n", namespace, "-f", "-", input=json.dumps(waiting_pod("warmup")))
    kube.wait_for(lambda: len(json.loads((kube.get("configmap", "modelplane-models", namespace) or {"data": {
        "index.json": '{"models": []}'}})["data"]["index.json"])["models"]) == 2, timeout=60,
        what="both Models in the namespace ConfigMap")

    entries: list[int] = []
    done = threading.Event()

    def watch_configmap():
        while not done.is_set():
            cm = kube.get("configmap", "modelplane-models", namespace)
            entries.append(len(json.loads(cm["data"]["index.json"])["models"]) if cm else 0)
            time.sleep(0.3)

    watcher = threading.Thread(target=watch_configmap, daemon=True)
    watcher.start()
    created, start = [], time.monotonic()
    operators = [p["metadata"]["name"] for p in get_json(kube, "pods", "-n", OPERATOR_NS, "-l", SELECTOR)["items"]]
    disruptions = {5: lambda: kube.run("delete", "pod", "-n", OPERATOR_NS, operators[0], "--wait=false"),
                   20: lambda: kube.run("rollout", "restart", "deployment", "-n", OPERATOR_NS, "-l", SELECTOR)}
    rollout = None
    while time.monotonic() - start < 50 or (rollout and rollout.poll() is None):
        elapsed = int(time.monotonic() - start)
        for at in [t for t in disruptions if t <= elapsed]:
            disruptions.pop(at)()
            if at == 20:
                rollout = subprocess.Popen([kube.kubectl_bin, "rollout", "status", "deployment", "-n", OPERATOR_NS,
                                            "-l", SELECTOR, "--timeout=5m"], env=kube.env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        name = f"p{len(created)}"
        kube.run("apply", "-n", namespace, "-f", "-", input=json.dumps(waiting_pod(name)))
        created.append(name)
        time.sleep(0.5)
    done.set()
    watcher.join()

    pods = {p["metadata"]["name"]: p for p in get_json(kube, "pods", "-n", namespace)["items"]}
    unconfigured = [n for n in created
                    if (pods[n]["metadata"].get("annotations") or {}).get("modelplane.dev/injected")
                    != f"{namespace}/first,{namespace}/second"]
    assert not unconfigured, f"{len(unconfigured)}/{len(created)} pods admitted without their configuration: " \
                             f"{unconfigured[:5]}"
    assert len(created) > 25
    assert min(entries) == 2, f"the namespace ConfigMap lost an entry: counts seen {sorted(set(entries))}"
    replicas = get_json(kube, "pods", "-n", OPERATOR_NS, "-l", SELECTOR)["items"]
    assert not set(operators) & {p["metadata"]["name"] for p in replicas}  # both replicas were replaced
