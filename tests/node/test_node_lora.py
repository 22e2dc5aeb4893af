"""LoRA adapters on the real node: a keyed Model with adapters made here (hack/tinylora.py), served by a real vLLM pod
as the operator renders it, with the loader sidecar from the operator's image. Adapters are listed by the server,
served to an AutoGen agent that names one, added live without a restart, back on a replacement pod before it takes
requests, unloaded when removed; broken ones are reported and leave the others serving; clients holding the key
cannot load adapters nor reach the routes vLLM leaves unguarded (the server gate).

The CPU build of vLLM gives a base-model request batched with adapter requests an adapter's output (NOTES.md), so
nothing here sends base and adapter requests at the same time."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import bind_weights, get_json, pod_logs
from harness import temporary_namespace
from localvllm import REPO, vllm_python

pytestmark = pytest.mark.timeout(1200)
MODEL = "tiny-lora"
SELECTOR = f"app.kubernetes.io/instance={MODEL}"
# name -> (rank, seed); "big" has a rank above the Model's lora.maxRank (16)
MADE = {"a1": (8, 1), "a2": (8, 2), "a3": (8, 3), "big": (32, 4)}


def adapter(name: str) -> dict:
    return {"name": name, "source": f"pvc://weights/lora/{name}"}


@pytest.fixture(scope="module")
def made_adapters(weights_pv):
    for name, (rank, seed) in MADE.items():
        subprocess.run([str(vllm_python()), str(REPO / "hack" / "tinylora.py"), str(weights_pv / "lora" / name),
                        "--rank", str(rank), "--seed", str(seed), "--base", str(weights_pv / "tiny")],
                       check=True, capture_output=True, timeout=300)
    return weights_pv


def lora_model(ns: str, names: list[str]) -> dict:
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": MODEL, "namespace": ns},
            "spec": {"source": "pvc://weights/tiny", "gpus": 0,
                     "engineArgs": {"maxModelLen": 1024, "enforceEager": True},
                     "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "8Gi"}},
                     "apiKeySecretRef": {"name": "lora-key"},
                     "lora": {"maxRank": 16, "maxAdapters": 2},
                     "adapters": [adapter(n) for n in names]}}


def adapters_status(kube, ns: str) -> dict:
    status = (kube.get("model", MODEL, ns) or {}).get("status") or {}
    return {a["name"]: a for a in status.get("adapters") or []}


def wait_adapters(kube, ns: str, want: dict, timeout: float = 120) -> dict:
    """Until status.adapters has, for each name, the (ready, reason) wanted; returns it."""
    def matched():
        got = adapters_status(kube, ns)
        return got if {n: (a["ready"], a["reason"]) for n, a in got.items()} == want else None
    return kube.wait_for(matched, timeout=timeout, interval=1, what=f"status.adapters {want}")


def server_pod(kube, ns: str) -> dict:
    pods = [p for p in get_json(kube, "pods", "-n", ns, "-l", SELECTOR)["items"]
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def loader_report(kube, ns: str, pod: str) -> dict:
    return json.loads(kube.run("get", "--raw", f"/api/v1/namespaces/{ns}/pods/{pod}:8002/proxy/adapters").stdout)


LIST_MODELS = """
import json, openai
print("MODELS " + json.dumps({m.id: getattr(m, "parent", None) for m in openai.OpenAI().models.list().data}))
"""


def listed_models(kube, ns: str, name: str) -> dict:
    """What the Model's endpoint lists under /v1/models, asked from an injected pod with the injected key."""
    return run_in_pod(kube, ns, name, LIST_MODELS, "MODELS")


KNOCK = """
import json, os, urllib.error, urllib.request
base = os.environ["OPENAI_BASE_URL"].removesuffix("/v1")
key = {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "Content-Type": "application/json"}
asks = [("GET", "/v1/models", None), ("POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/tmp"}),
        ("POST", "/v1/unload_lora_adapter", {"lora_name": "a1"}), ("POST", "/adapters", {"name": "x", "src": "/tmp"}),
        ("DELETE", "/adapters/a1", None), ("POST", "/invocations", {"prompt": "hi", "max_tokens": 1}),
        ("POST", "/scale_elastic_ep", {"new_data_parallel_size": 2})]
got = {}
for method, path, body in asks:
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, data, key, method=method), timeout=30) as r:
            got[f"{method} {path}"] = [r.status, r.read().decode()[:200]]
    except urllib.error.HTTPError as e:
        got[f"{method} {path}"] = [e.code, e.read().decode()[:200]]
print("KNOCKED " + json.dumps(got))
"""


def run_in_pod(kube, ns: str, name: str, code: str, marker: str) -> dict:
    """Run `code` in an injected pod of the agents image (the Model's endpoint and key in its env); the JSON it
    prints after `marker`."""
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": ns, "labels": {"modelplane.dev/inject": "true"},
        "annotations": {"modelplane.dev/models": MODEL}},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "client", "image": "modelplane-agent:0.1.0", "command": ["python", "-c", code]}]}})
    kube.wait_for(lambda: (kube.get("pod", name, ns) or {}).get("status", {}).get("phase")
                  in ("Succeeded", "Failed"), timeout=120, what=f"the {name} pod")
    out = kube.run("logs", name, "-n", ns).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith(marker + " ")), None)
    assert line, out
    return json.loads(line[len(marker) + 1:])


def lora_info(kube, ns: str) -> str:
    """vLLM's own record of which adapters ran (its lora_requests_info gauge, one label set per combination seen)."""
    metrics = kube.run("get", "--raw", f"/api/v1/namespaces/{ns}/services/{MODEL}:8000/proxy/metrics").stdout
    return "\n".join(ln for ln in metrics.splitlines() if ln.startswith("vllm:lora_requests_info"))


@pytest.fixture(scope="module")
def lora(kube, operator, made_adapters):
    with temporary_namespace(kube, "lora") as ns:
        bind_weights(kube, ns, made_adapters)
        kube.run("create", "secret", "generic", "lora-key", "-n", ns, "--from-literal=api-key=lora-node-key")
        broken = [adapter("big"), {"name": "gone", "source": "pvc://weights/lora/missing"}]
        manifest = lora_model(ns, ["a1", "a2"])
        manifest["spec"]["adapters"] += broken
        kube.apply(manifest)
        kube.wait_for(lambda: ((kube.get("model", MODEL, ns) or {}).get("status") or {}).get("phase") == "Ready",
                      timeout=420, interval=2, what=f"{MODEL} Ready")
        try:
            yield ns, broken
        finally:
            # Gone before the next module starts its servers: a vLLM pod left to its graceful stop shares the
            # node's two cores with them (the routing test's replicas took 3 times as long to become ready).
            kube.run("patch", "model", MODEL, "-n", ns, "--type=merge", "-p", '{"spec": {"replicas": 0}}', check=False)
            kube.wait_for(lambda: (kube.get("deployment", MODEL, ns) or {}).get("spec", {}).get("replicas") == 0,
                          timeout=30, what="the server Deployment at 0 (no pod replaced)")
            kube.run("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", check=False)
            kube.wait_for(lambda: not get_json(kube, "pods", "-n", ns)["items"], timeout=60,
                          what="the LoRA namespace's pods gone")


def test_adapters_are_served_and_broken_ones_reported(kube, lora):
    ns, _ = lora
    got = wait_adapters(kube, ns, {"a1": (True, "Loaded"), "a2": (True, "Loaded"),
                                   "big": (False, "RankTooLarge"), "gone": (False, "SourceNotFound")})
    assert got["a1"]["loadedReplicas"] == 1
    assert "greater than max_lora_rank 16" in got["big"]["message"], got["big"]
    assert "/models/lora/missing" in got["gone"]["message"], got["gone"]
    listed = listed_models(kube, ns, "list-1")
    assert listed == {MODEL: None, "a1": MODEL, "a2": MODEL}, listed
    events = [f"{e['reason']}: {e['message']}" for e in get_json(
        kube, "events", "-n", ns, "--field-selector", f"involvedObject.kind=Model,involvedObject.name={MODEL}")["items"]]
    assert any(e.startswith("AdapterFailed: big: RankTooLarge") for e in events), events
    assert any(e.startswith("AdapterFailed: gone: SourceNotFound") for e in events), events


def test_an_autogen_agent_names_an_adapter_and_the_adapter_answers(kube, lora):
    ns, _ = lora
    assert "a1" not in lora_info(kube, ns)  # no request has used it yet
    kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "sql", "namespace": ns},
                "spec": {"image": "modelplane-agent:0.1.0", "args": ["--turns", "2", "--every", "3600"],
                         "models": [{"name": MODEL, "adapter": "a1"}]}})
    selector = "modelplane.dev/agent=sql"
    logs = kube.wait_for(lambda: (out := pod_logs(kube, ns, selector)) and "Total completion tokens" in out and out,
                         timeout=240, interval=2, what="the AutoGen agent's answer")
    assert "could not finish" not in logs, logs
    pod = get_json(kube, "pods", "-n", ns, "-l", selector)["items"][0]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    assert env["OPENAI_MODEL"] == "a1", env
    info = lora_info(kube, ns)
    assert 'running_lora_adapters="a1"' in info, info  # vLLM ran the agent's requests with adapter a1
    assert "a2" not in info, info
    kube.run("delete", "agent", "sql", "-n", ns, "--wait=false")


def test_an_adapter_added_to_a_running_model_is_served_without_a_restart(kube, lora):
    ns, broken = lora
    before = server_pod(kube, ns)
    kube.run("patch", "model", MODEL, "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"adapters": [adapter("a1"), adapter("a2"), adapter("a3"), *broken]}}))
    start = time.monotonic()
    wait_adapters(kube, ns, {"a1": (True, "Loaded"), "a2": (True, "Loaded"), "a3": (True, "Loaded"),
                             "big": (False, "RankTooLarge"), "gone": (False, "SourceNotFound")}, timeout=60)
    print(f"a3 added: loaded and in status {time.monotonic() - start:.1f} s after the patch")
    after = server_pod(kube, ns)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert all(s["restartCount"] == 0 for s in after["status"]["containerStatuses"]), after["status"]
    assert loader_report(kube, ns, after["metadata"]["name"])["loaded"] == ["a1", "a2", "a3"]


def test_a_replacement_pod_has_every_adapter_before_it_takes_requests(kube, lora):
    ns, _ = lora
    old = server_pod(kube, ns)["metadata"]["name"]
    kube.run("delete", "pod", old, "-n", ns, "--wait=false")
    seen_unready = False
    end = time.monotonic() + 300
    while time.monotonic() < end:
        pods = [p for p in get_json(kube, "pods", "-n", ns, "-l", SELECTOR)["items"] if p["metadata"]["name"] != old]
        if pods and pods[0]["status"].get("podIP"):
            if is_ready(pods[0]):
                break
            seen_unready = True
        time.sleep(1)
    else:
        raise AssertionError("no ready replacement pod")
    report = loader_report(kube, ns, pods[0]["metadata"]["name"])  # the first moment it counts as ready
    assert seen_unready and report["ready"] and report["loaded"] == ["a1", "a2", "a3"], report
    wait_adapters(kube, ns, {"a1": (True, "Loaded"), "a2": (True, "Loaded"), "a3": (True, "Loaded"),
                             "big": (False, "RankTooLarge"), "gone": (False, "SourceNotFound")}, timeout=60)


def test_a_removed_adapter_is_unloaded(kube, lora):
    ns, _ = lora
    kube.run("patch", "model", MODEL, "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"adapters": [adapter("a1"), adapter("a3")]}}))
    wait_adapters(kube, ns, {"a1": (True, "Loaded"), "a3": (True, "Loaded")}, timeout=60)
    pod = server_pod(kube, ns)["metadata"]["name"]
    kube.wait_for(lambda: loader_report(kube, ns, pod)["loaded"] == ["a1", "a3"], timeout=30,
                  what="a2 unloaded")
    assert listed_models(kube, ns, "list-2") == {MODEL: None, "a1": MODEL, "a3": MODEL}


def test_clients_cannot_load_adapters_or_reach_the_routes_vllm_leaves_unguarded(kube, lora):
    """The server gate (servergate.py): a client holding the Model's key still cannot load or unload adapters, nor
    use the routes vLLM serves without checking its key (SageMaker's /invocations and /adapters, /scale_elastic_ep);
    the gate answers them (its own message), not vLLM. The loader, over the pod's loopback, still loads (the tests
    above)."""
    ns, _ = lora
    before = loader_report(kube, ns, server_pod(kube, ns)["metadata"]["name"])["loaded"]
    got = run_in_pod(kube, ns, "knock", KNOCK, "KNOCKED")
    assert got.pop("GET /v1/models")[0] == 200
    for ask, (status, body) in got.items():
        assert status == 403 and "closed by modelplane" in body, (ask, status, body)
    pod = server_pod(kube, ns)
    assert loader_report(kube, ns, pod["metadata"]["name"])["loaded"] == before
    assert all(s["restartCount"] == 0 for s in pod["status"]["containerStatuses"]), pod["status"]
