"""The gate a keyed or LoRA Model's vLLM runs (servergate.py): which requests it refuses, what a refused client
reads, and how the operator renders it into the server pod. The ASGI app behind it is a stand-in that records what
reaches it; the node test (tests/node/test_node_lora.py) asks the real vLLM."""

from __future__ import annotations

import ast
import asyncio
import json
import sys

import pytest

from modelplane_operator import servergate
from modelplane_operator.config import Config
from modelplane_operator.keys import GATE_ANNOTATION
from modelplane_operator.render import (GATE_MOUNT, GATE_SOURCE, gate_name, gated, render_children,
                                        render_deployment, with_gate_on_path)

POD = "10.244.0.7"  # another pod, or the router


@pytest.mark.parametrize("method, path, client, refused", [
    ("POST", "/v1/chat/completions", POD, False), ("GET", "/v1/models", POD, False),
    ("POST", "/v2/x", POD, False), ("POST", "/inference/v1/generate", POD, False),
    ("GET", "/health", POD, False), ("GET", "/metrics", POD, False), ("HEAD", "/version", POD, False),
    ("OPTIONS", "/invocations", POD, False), ("GET", "/ping", POD, False), ("POST", "/ping", POD, False),
    # vLLM's routes outside its key's prefixes that change what it does
    ("POST", "/invocations", POD, True), ("POST", "/invocations/", POD, True), ("POST", "//invocations", POD, True),
    ("POST", "/v1/../invocations", POD, True), ("POST", "/adapters", POD, True), ("DELETE", "/adapters/sql", POD, True),
    ("POST", "/scale_elastic_ep", POD, True), ("POST", "/abort_requests", POD, True), ("post", "/pause", POD, True),
    ("POST", "/v1x", POD, True),
    # adapters: only the pod's own loader
    ("POST", "/v1/load_lora_adapter", POD, True), ("POST", "/v1/unload_lora_adapter", POD, True),
    ("POST", "/v1//load_lora_adapter/", POD, True),
    ("POST", "/v1/load_lora_adapter", "127.0.0.1", False), ("POST", "/v1/unload_lora_adapter", "::1", False),
    ("POST", "/invocations", "127.0.0.1", False),
    ("POST", "/invocations", None, True),  # no client address (a Unix socket): not the loader
])
def test_refusal(method, path, client, refused):
    assert bool(servergate.refusal(method, path, client)) == refused


def test_the_reason_names_the_route_and_where_adapters_are_set():
    assert "spec.adapters" in servergate.refusal("POST", "/v1/load_lora_adapter", POD)
    assert servergate.refusal("POST", "/invocations", POD).startswith("POST /invocations is closed by modelplane")


def call(path, client):
    """One request through Gate: the status sent and the body, and whether the app behind it was reached."""
    reached, sent = [], []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "client": (client, 5555) if client else None, "method": "POST"}
    asyncio.run(servergate.Gate(app)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), bool(reached)


def test_a_refused_request_gets_403_with_an_openai_style_error_and_never_reaches_vllm():
    status, body, reached = call("/adapters", POD)
    assert (status, reached) == (403, False)
    error = json.loads(body)["error"]
    assert error["code"] == 403 and "POST /adapters is closed" in error["message"]


def test_allowed_requests_and_the_pods_own_loader_reach_vllm():
    assert call("/v1/chat/completions", POD) == (200, b"ok", True)
    assert call("/v1/load_lora_adapter", "127.0.0.1") == (200, b"ok", True)


def test_lifespan_and_websocket_scopes_pass_untouched():
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["type"])
    asyncio.run(servergate.Gate(app)({"type": "lifespan"}, None, None))
    assert reached == ["lifespan"]


def test_the_gate_imports_nothing_but_the_standard_library():
    """It runs in the vLLM image, alone, under servergate.MODULE."""
    tree = ast.parse(GATE_SOURCE)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))


def model(spec):
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "m", "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": {"source": "hf://org/m", **spec}}


KEYED = {"apiKeySecretRef": {"name": "k"}}
LORA = {"adapters": [{"name": "sql", "source": "pvc://w/sql"}]}


@pytest.mark.parametrize("spec, want", [({}, False), (KEYED, True), (LORA, True), ({"lora": {}}, True)])
def test_gated_models_are_the_keyed_and_the_lora_ones(spec, want):
    assert gated(model(spec)["spec"]) == want


def test_a_gated_server_imports_the_gate_from_its_configmap():
    children = render_children(model(KEYED), Config())
    configmap = next(c for c in children if c["kind"] == "ConfigMap")
    assert configmap["metadata"]["name"] == gate_name("m") == "m-vllm-gate"
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert configmap["data"] == {"modelplane_gate.py": GATE_SOURCE}
    template = children[0]["spec"]["template"]
    server = template["spec"]["containers"][0]
    assert server["args"][-2:] == ["--middleware", "modelplane_gate.Gate"]
    assert {"name": "gate", "mountPath": GATE_MOUNT, "readOnly": True} in server["volumeMounts"]
    assert {"name": "gate", "configMap": {"name": "m-vllm-gate"}} in template["spec"]["volumes"]
    assert {"name": "PYTHONPATH", "value": GATE_MOUNT} in server["env"]
    assert len(template["metadata"]["annotations"][GATE_ANNOTATION]) == 16


def test_an_ungated_server_has_no_gate():
    children = render_children(model({}), Config())
    assert not any(c["kind"] == "ConfigMap" for c in children)
    server = children[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--middleware" not in server["args"] and not any(e["name"] == "PYTHONPATH" for e in server["env"])


def test_the_models_own_middleware_is_kept_beside_the_gate():
    server = render_deployment(model({**KEYED, "engineArgs": {"middleware": ["mine.Mw"]}}), Config())
    args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--middleware"] == ["mine.Mw", "modelplane_gate.Gate"]


@pytest.mark.parametrize("env, want", [
    ([], [{"name": "PYTHONPATH", "value": GATE_MOUNT}]),
    ([{"name": "PYTHONPATH", "value": "/opt/x"}], [{"name": "PYTHONPATH", "value": f"{GATE_MOUNT}:/opt/x"}]),
    ([{"name": "PYTHONPATH", "value": ""}], [{"name": "PYTHONPATH", "value": GATE_MOUNT}]),
    ([{"name": "PYTHONPATH"}], [{"name": "PYTHONPATH", "value": GATE_MOUNT}]),
    ([{"name": "PYTHONPATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],  # cannot be joined
     [{"name": "PYTHONPATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]),
])
def test_the_gates_folder_comes_first_on_the_models_pythonpath(env, want):
    assert with_gate_on_path(env) == want


def test_a_users_pythonpath_is_joined_after_the_gates_folder():
    server = render_deployment(model({**LORA, "env": [{"name": "PYTHONPATH", "value": "/opt/x"}]}), Config())
    env = server["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "PYTHONPATH"] == [{"name": "PYTHONPATH", "value": f"{GATE_MOUNT}:/opt/x"}]
