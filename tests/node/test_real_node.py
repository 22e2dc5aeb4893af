"""The product as a user's cluster runs it, on the real node: the operator from its chart and image, the rendered vLLM
pod from its image with the kubelet's own probes, agents in pods reaching the Model through CoreDNS and kube-proxy."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import bind_weights, get_json, pod_logs
from harness import temporary_namespace

# The first test here may also start the shared real-node cluster (and import the vLLM image into a fresh
# containerd: minutes), inside its time limit.
pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
TINY_EXAMPLE = REPO / "examples" / "tiny.yaml"


def watch_phases(kube, namespace: str, name: str, until: str, timeout: float) -> list[str]:
    """The Model's phases in the order they were seen, polled every half second until `until`."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        model = kube.get("model", name, namespace) or {}
        phase = (model.get("status") or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        if phase == until:
            return seen
        time.sleep(0.5)
    pods = kube.run("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = kube.run("get", "events", "-n", namespace, check=False).stdout
    raise AssertionError(f"{name} not {until} in {timeout}s; phases {seen}\n{pods}\n{events}")


def proxy_get(kube, namespace: str, service: str, path: str) -> str:
    """GET through the API server's Service proxy (which reaches the node through its egress)."""
    return kube.run("get", "--raw", f"/api/v1/namespaces/{namespace}/services/{service}:8000/proxy{path}").stdout


@pytest.fixture(scope="module")
def served(kube, operator, weights_pv):
    """examples/tiny.yaml, applied as a user would, served by a real vLLM pod: shared by the tests of this module
    (each vLLM start costs about a minute and a half on the 2-core node)."""
    with temporary_namespace(kube, "serve") as ns:
        bind_weights(kube, ns, weights_pv)
        start = time.monotonic()
        kube.run("apply", "-n", ns, "-f", str(TINY_EXAMPLE))
        phases = watch_phases(kube, ns, "tiny", "Ready", timeout=420)
        ready_s = time.monotonic() - start
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "real-node-tiny-ready.json").write_text(json.dumps(
            {"apply_to_ready_s": round(ready_s, 1), "phases": phases}, indent=2))
        print(f"tiny Model: kubectl apply -> Ready in {ready_s:.0f}s on the real node, phases {phases}")
        yield ns, phases


def test_rendered_vllm_pod_becomes_ready_from_kubelet_probes(kube, served):
    ns, phases = served
    assert phases[-1] == "Ready" and "Loading" in phases, phases
    pod = get_json(kube, "pods", "-n", ns, "-l", "app.kubernetes.io/instance=tiny")["items"][0]
    assert pod["spec"]["nodeName"] == "real-cpu-0"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["started"] and status["restartCount"] == 0
    # The pod runs exactly what was rendered: the Deployment's container is the pod's container.
    deployment = get_json(kube, "deployment", "tiny", "-n", ns)
    rendered = deployment["spec"]["template"]["spec"]["containers"][0]
    assert pod["spec"]["containers"][0]["args"] == rendered["args"]
    assert pod["spec"]["containers"][0]["image"] == rendered["image"]
    models = json.loads(proxy_get(kube, ns, "tiny", "/v1/models"))
    assert [m["id"] for m in models["data"]] == ["tiny"]
    model = kube.get("model", "tiny", ns)
    assert model["status"]["readyReplicas"] == 1
    assert model["status"]["endpoint"] == f"http://tiny.{ns}.svc.cluster.local:8000/v1"
    # A new Model's way up is in status alone (no Events): the Ready condition says since when it serves.
    reasons = kube.run("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Model",
                       "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert not {"Created", "Pending", "Loading", "Ready"} & set(reasons), reasons
    ready = next(c for c in model["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["lastTransitionTime"], ready


def test_every_example_runs_or_schedules(kube, served, weights_pv):
    """Each example, applied as a user would, next to examples/tiny.yaml (the served Model: applying it again
    changes nothing): CPU ones run on the real node, GPU ones schedule on the kwok GPU nodes; no pod of the real node
    crash-loops. The examples' other objects go afterwards (their agents would load the node)."""
    ns, _ = served
    tiny_pods = {p["metadata"]["name"] for p in get_json(kube, "pods", "-n", ns, "-l",
                                                         "app.kubernetes.io/instance=tiny")["items"]}
    # examples/secured-pvc.yaml's claim, for a GPU pod: a volume with no node affinity, so a kwok node can take it
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"model-weights-{ns}"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                         "hostPath": {"path": str(weights_pv)},
                         "claimRef": {"namespace": ns, "name": "model-weights"}}})
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "model-weights", "namespace": ns},
                "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "",
                         "volumeName": f"model-weights-{ns}", "resources": {"requests": {"storage": "1Gi"}}}})
    others = sorted(p for p in (REPO / "examples").glob("*.yaml") if p.name not in ("cpu.yaml", TINY_EXAMPLE.name))
    try:
        for path in [TINY_EXAMPLE, *others]:
            kube.run("apply", "-n", ns, "-f", str(path))

        def started():  # every pod placed, and every container of the real node's pods running
            pods = get_json(kube, "pods", "-n", ns)["items"]
            return pods if all(p["spec"].get("nodeName") for p in pods) and all(
                "running" in (s.get("state") or {}) for p in pods if p["spec"]["nodeName"] == "real-cpu-0"
                for s in p["status"].get("containerStatuses") or [{}]) else None
        kube.wait_for(started, timeout=240, interval=2, what="every example's pods placed and started")
        time.sleep(20)  # the agents' first calls to the tiny Model
        pods = get_json(kube, "pods", "-n", ns)["items"]
        placed = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}
        assert all(placed.values()), placed
        for p in pods:
            for s in p["status"].get("containerStatuses", []):
                waiting = (s.get("state") or {}).get("waiting") or {}
                assert waiting.get("reason") != "CrashLoopBackOff" and s["restartCount"] == 0, \
                    (p["metadata"]["name"], s)
        gpu = {n for n, node in placed.items() if node.startswith("kwok-gpu")}
        assert any(n.startswith("qwen-7b-") for n in gpu), placed
        now_tiny = {p["metadata"]["name"] for p in pods
                    if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") == "tiny"}
        assert now_tiny == tiny_pods, (now_tiny, tiny_pods)  # tiny.yaml applied again: no rollout
        assert all(placed[n] == "real-cpu-0" for n in tiny_pods), placed
        assert kube.get("model", "tiny", ns)["status"]["phase"] == "Ready"
    finally:
        for path in others:
            kube.run("delete", "-n", ns, "-f", str(path), "--ignore-not-found", "--wait=false", check=False)


# The agents image's three programs, each as an Agent runs it: (Agent name, its command or None for the image's
# ENTRYPOINT, what its log says once the Model answered).
AGENT_PROGRAMS = [
    ("team", None, "Total completion tokens"),                                # AutoGen: examples/agent.yaml
    ("maf", ["python", "/app/examples/maf_agent.py"], "completion tokens:"),  # examples/maf-agent.yaml
    ("sdk", ["python", "/app/examples/openai_sdk.py"], "completion tokens:"), # examples/openai-agent.yaml
]


@pytest.mark.parametrize("name, command, answered", AGENT_PROGRAMS, ids=["autogen", "agent-framework", "openai-sdk"])
def test_agent_pod_calls_the_model_through_cluster_dns(kube, served, name, command, answered):
    """An Agent (the agents image, with AutoGen, Agent Framework or the plain OpenAI SDK) reaches the Model by its
    Service name, configured by the injection alone."""
    ns, _ = served
    spec = {"image": "modelplane-agent:0.1.0", "args": ["--every", "3600"],
            "models": [{"name": "tiny", "default": True}]}
    if command:
        spec["command"] = command
    else:
        spec["args"] = ["--turns", "2", *spec["args"]]
    kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name, "namespace": ns},
                "spec": spec})
    selector = f"modelplane.dev/agent={name}"
    logs = kube.wait_for(lambda: (out := pod_logs(kube, ns, selector)) and answered in out and out, timeout=240,
                         interval=2, what=f"the {name} agent's answer in its logs")
    url = f"http://tiny.{ns}.svc.cluster.local:8000/v1"
    if name == "sdk":
        assert f"model tiny at {url}/" in logs, logs
    else:
        assert "models injected here: tiny" in logs, logs
    if name == "maf":
        assert "tools: none (the Model does not serve tool_choice auto)" in logs, logs
    failed = ("the team could not finish (", "the agent could not answer (", "no answer (")  # the programs' retries
    assert "completion tokens: 0" not in logs and not any(f in logs for f in failed), logs
    pod = get_json(kube, "pods", "-n", ns, "-l", selector)["items"][0]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    assert env["OPENAI_BASE_URL"] == url and env["OPENAI_MODEL"] == "tiny" and env["OPENAI_API_KEY"] == "no-key"
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    kube.run("delete", "agent", name, "-n", ns, "--wait=false")  # the node has two cores: one agent at a time


def test_killed_vllm_process_is_restarted_by_kubelet_and_reported(kube, node_cluster, served):
    ns, _ = served
    node = node_cluster.node
    container = node.crictl("ps", "--name", "vllm", "--label", f"io.kubernetes.pod.namespace={ns}", "-q").stdout.split()
    assert len(container) == 1, container
    pid = json.loads(node.crictl("inspect", container[0]).stdout)["info"]["pid"]
    os.kill(pid, signal.SIGKILL)  # a crash, as the OOM killer would do it
    kube.wait_for(lambda: get_json(kube, "pods", "-n", ns, "-l", "app.kubernetes.io/instance=tiny")["items"][0]
                  ["status"]["containerStatuses"][0]["restartCount"] == 1, timeout=60, what="the kubelet's restart")
    phases = watch_phases(kube, ns, "tiny", "Loading", timeout=60)
    phases += watch_phases(kube, ns, "tiny", "Ready", timeout=300)
    assert phases[0] == "Loading" and phases[-1] == "Ready", phases
    # Leaving Ready and coming back are what a person acts on: both are Events (the first Ready was not).
    kube.wait_for(lambda: {"Loading", "Ready"} <= set(kube.run(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Model,involvedObject.name=tiny",
        "-o", "jsonpath={.items[*].reason}").stdout.split()), timeout=30, what="Loading and Ready Events")


CLIENT_CHECK = """
import os, openai
base, model = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_MODEL"]
try:
    openai.OpenAI(base_url=base, api_key="wrong-key").models.list()
    print("without the key: answered")
except openai.AuthenticationError as e:
    print("without the key:", e.status_code)
reply = openai.OpenAI().chat.completions.create(model=model, max_tokens=8,
                                                messages=[{"role": "user", "content": "Hello"}])
print("with the injected key:", reply.usage.completion_tokens, "tokens")
"""


def test_spec_change_rolls_out_behind_readiness_and_the_key_is_enforced(kube, served):
    """Adding an API key is a spec change: the new pod must be ready before the old one goes (the Model never stops
    serving), and then the Service answers only with the key, which an injected pod gets from the Secret."""
    ns, _ = served
    kube.run("create", "secret", "generic", "tiny-key", "-n", ns, "--from-literal=api-key=s3cret-node-key")
    old = {p["metadata"]["name"] for p in get_json(kube, "pods", "-n", ns, "-l",
                                                    "app.kubernetes.io/instance=tiny")["items"]}
    kube.run("patch", "model", "tiny", "-n", ns, "--type=merge", "-p",
             json.dumps({"spec": {"apiKeySecretRef": {"name": "tiny-key"}}}))
    end = time.monotonic() + 420
    while time.monotonic() < end:
        pods = get_json(kube, "pods", "-n", ns, "-l", "app.kubernetes.io/instance=tiny")["items"]
        serving = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                          for c in p["status"].get("conditions", []))]
        assert serving, "no ready vLLM pod during the rollout"
        assert kube.get("model", "tiny", ns)["status"]["phase"] == "Ready"
        if not old & {p["metadata"]["name"] for p in pods} and all(p in serving for p in pods):
            break
        time.sleep(1)
    else:
        raise AssertionError("the rollout did not finish")
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "client", "namespace": ns, "labels": {"modelplane.dev/inject": "true"},
        "annotations": {"modelplane.dev/models": "tiny"}},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "client", "image": "modelplane-agent:0.1.0", "command": ["python", "-c", CLIENT_CHECK]}]}})
    kube.wait_for(lambda: (kube.get("pod", "client", ns) or {}).get("status", {}).get("phase")
                  in ("Succeeded", "Failed"), timeout=120, what="the client pod")
    out = kube.run("logs", "client", "-n", ns).stdout
    assert "without the key: 401" in out and "with the injected key:" in out, out
    pod = kube.get("pod", "client", ns)
    key_env = [e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "OPENAI_API_KEY"]
    ref = key_env[0]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("tiny-key", "api-key"), key_env


INSIDE_CHECK = """
import os, openai

base = os.environ.get("OPENAI_BASE_URL")
print("base url:", base)
if base:
    reply = openai.OpenAI().chat.completions.create(model=os.environ["OPENAI_MODEL"], max_tokens=8,
                                                    messages=[{"role": "user", "content": "Hello"}])
    print("answered with", reply.usage.completion_tokens, "tokens")
"""


def test_other_namespaces_allowed_and_refused_as_seen_from_their_pods(kube, served):
    """A Model listing another namespace in allowedNamespaces serves that namespace's Agent and injected pods (with
    their own Secret of the key's name); a namespace not listed gets nothing, and its pod says so."""
    ns, _ = served
    with temporary_namespace(kube, "allowed") as allowed, temporary_namespace(kube, "refused") as refused:
        kube.run("patch", "model", "tiny", "-n", ns, "--type=merge", "-p",
                 json.dumps({"spec": {"allowedNamespaces": [allowed]}}))
        key = (kube.get("model", "tiny", ns)["spec"].get("apiKeySecretRef") or {}).get("name")
        for where in (allowed, refused):
            if key:  # the operator never copies a key across namespaces: each namespace brings its own Secret
                data = get_json(kube, "secret", key, "-n", ns)["data"]
                kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": key, "namespace": where},
                            "data": data})
            kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": "inside", "namespace": where, "labels": {"modelplane.dev/inject": "true"},
                "annotations": {"modelplane.dev/models": f"{ns}/tiny"}},
                "spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "modelplane-agent:0.1.0", "command": ["python", "-c", INSIDE_CHECK]}]}})
        kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent",
                    "metadata": {"name": "team", "namespace": allowed},
                    "spec": {"image": "modelplane-agent:0.1.0", "args": ["--turns", "1", "--every", "3600"],
                             "models": [{"name": "tiny", "namespace": ns, "default": True}]}})

        def finished(where):
            return (kube.get("pod", "inside", where) or {}).get("status", {}).get("phase") in ("Succeeded", "Failed")
        try:
            kube.wait_for(lambda: finished(allowed) and finished(refused), timeout=180, what="the pods inside")
        except AssertionError as e:
            state = [kube.run(*args, check=False).stdout + kube.run(*args, check=False).stderr for w in (allowed, refused)
                     for args in (("get", "pods", "-n", w, "-o", "wide"), ("logs", "inside", "-n", w),
                                  ("describe", "pod", "inside", "-n", w))]
            raise AssertionError(f"{e}\n" + "\n".join(state)) from None
        assert "answered with" in kube.run("logs", "inside", "-n", allowed).stdout
        assert "base url: None" in kube.run("logs", "inside", "-n", refused).stdout
        annotations = kube.get("pod", "inside", refused)["metadata"]["annotations"]
        assert f"{ns}/tiny" in annotations.get("modelplane.dev/injection-error", ""), annotations
        logs = kube.wait_for(lambda: (out := pod_logs(kube, allowed, "modelplane.dev/agent=team"))
                             and "Total completion tokens" in out and out, timeout=240, interval=2,
                             what="the allowed namespace's Agent answering")
        assert "models injected here:" in logs and "tiny" in logs.split("models injected here:")[1].splitlines()[0]
