"""spec.routing: what a routed Model renders (vllm-router in front of the server pods), its status, and the session
header agents are told to send. Pure."""

from __future__ import annotations

import json

import pytest

from modelplane_operator.agentconfig import config_files, index_entry
from modelplane_operator.config import Config
from modelplane_operator.crd import ROUTING_POLICIES, SESSION_HEADER
from modelplane_operator.keys import MANAGED, MODEL_LABEL, ROUTER_LABEL
from modelplane_operator.model import spec_of
from modelplane_operator.render import child_keys, render_children
from modelplane_operator.status import compute_status, pod_summary, status_changed
from modelplane_operator.sync import child_key

CFG = Config()
POLICIES = Config(network_policies=True)
NOW = "2026-01-01T00:00:00Z"


def model(routing=None, status=None, **spec):
    spec = {"source": "hf://a/b", **spec}
    if routing is not None:
        spec["routing"] = routing
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 2},
            "spec": spec, "status": status or {}}


def by_key(children):
    return {child_key(c): c for c in children}


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_routing_defaults_to_cache_aware_with_one_router():
    assert spec_of(model({}))["routing"] == {"policy": "cache_aware", "replicas": 1}
    assert "routing" not in spec_of(model())
    assert ROUTING_POLICIES[0] == "cache_aware"


def test_an_unrouted_model_has_its_server_deployment_and_service_only():
    children = by_key(render_children(model(), CFG))
    assert list(children) == [("Deployment", "m"), ("Service", "m")]
    assert children[("Service", "m")]["spec"]["selector"] == {MODEL_LABEL: "m"}


def test_a_routed_models_endpoint_reaches_the_router_and_its_servers_keep_a_service_of_their_own():
    children = by_key(render_children(model({}), CFG))
    assert list(children) == [("Deployment", "m"), ("Service", "m"), ("Service", "m-vllm"), ("Deployment", "m-router"),
                              ("ServiceAccount", "m-router"), ("Role", "m-router"), ("RoleBinding", "m-router")]
    server, router = children[("Deployment", "m")], children[("Deployment", "m-router")]
    router_pods = router["spec"]["template"]["metadata"]["labels"]
    server_pods = server["spec"]["template"]["metadata"]["labels"]
    assert matches(children[("Service", "m")]["spec"]["selector"], router_pods)
    assert not matches(children[("Service", "m")]["spec"]["selector"], server_pods)
    assert matches(children[("Service", "m-vllm")]["spec"]["selector"], server_pods)
    # the server Deployment never takes the router's pods for its own, nor the pod watch (MODEL_LABEL) for servers
    assert not matches(server["spec"]["selector"]["matchLabels"], router_pods) and MODEL_LABEL not in router_pods
    assert matches(router["spec"]["selector"]["matchLabels"], router_pods) and router_pods[ROUTER_LABEL] == "m"


def test_every_child_is_owned_and_found_by_the_watches():
    from modelplane_operator import kube
    from modelplane_operator.handlers import make_stores

    stores = make_stores([])
    for child in render_children(model({}), POLICIES):
        meta = child["metadata"]
        assert kube.object_path(child["apiVersion"], child["kind"], "ns", meta["name"])  # the operator can address it
        assert child["kind"] in stores  # and reads it from a store
        assert meta["namespace"] == "ns" and meta["ownerReferences"][0]["uid"] == "u"
        assert matches(MANAGED, meta["labels"]) and meta["labels"][MODEL_LABEL] == "m", child_key(child)
        assert child_key(child) in child_keys("m")  # so that switching routing off finds and deletes it


def test_the_router_discovers_the_models_server_pods_in_its_namespace_only():
    router = by_key(render_children(model({"policy": "consistent_hash", "replicas": 2}), CFG))[("Deployment",
                                                                                              "m-router")]
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    pairs = dict(zip(args, args[1:]))
    assert pairs["--selector"] == f"{MODEL_LABEL}=m" and pairs["--service-discovery-namespace"] == "ns"
    assert pairs["--service-discovery-port"] == "8000" and pairs["--policy"] == "consistent_hash"
    assert "--service-discovery" in args and router["spec"]["replicas"] == 2
    pod = router["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "m-router"
    assert pod["containers"][0]["image"] == CFG.router_image


def test_the_routers_role_reads_pods_and_nothing_else():
    children = by_key(render_children(model({}), CFG))
    assert children[("Role", "m-router")]["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                                                        "verbs": ["get", "list", "watch"]}]
    binding = children[("RoleBinding", "m-router")]
    assert binding["roleRef"]["name"] == "m-router"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "m-router", "namespace": "ns"}]


def test_a_keyed_models_key_stays_with_the_servers():
    """The router gets no key (it passes the client's Authorization on, and vLLM checks it)."""
    children = by_key(render_children(model({}, apiKeySecretRef={"name": "k"}), CFG))
    router = children[("Deployment", "m-router")]["spec"]["template"]["spec"]["containers"][0]
    assert "env" not in router and "envFrom" not in router and "--api-key" not in router["args"]
    server = children[("Deployment", "m")]["spec"]["template"]["spec"]["containers"][0]
    assert any(e["name"] == "VLLM_API_KEY" for e in server["env"])


def test_network_policies_let_the_router_reach_the_servers_and_clients_reach_the_router():
    children = by_key(render_children(model({}), POLICIES))
    servers, router = children[("NetworkPolicy", "m")], children[("NetworkPolicy", "m-router")]
    assert {"podSelector": {"matchLabels": {ROUTER_LABEL: "m"}}} in servers["spec"]["ingress"][0]["from"]
    assert router["spec"]["podSelector"] == {"matchLabels": {ROUTER_LABEL: "m"}}
    assert router["spec"]["ingress"][0]["from"] == servers["spec"]["ingress"][0]["from"][:-1]
    unrouted = by_key(render_children(model(), POLICIES))[("NetworkPolicy", "m")]
    assert {"podSelector": {"matchLabels": {ROUTER_LABEL: "m"}}} not in unrouted["spec"]["ingress"][0]["from"]


def deployment(ready):
    return {"metadata": {"generation": 1, "annotations": {"modelplane.dev/model-generation": "2"}},
            "status": {"observedGeneration": 1, "readyReplicas": ready, "replicas": 1, "updatedReplicas": 1}}


READY_POD = pod_summary({"metadata": {"name": "m-a"}, "status": {"conditions": [
    {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}})


@pytest.mark.parametrize("routers, phase, reason, routing", [
    (None, "Loading", "RouterNotReady", {"policy": "cache_aware", "readyRouters": 0, "routedReplicas": 0}),
    (0, "Loading", "RouterNotReady", {"policy": "cache_aware", "readyRouters": 0, "routedReplicas": 0}),
    (1, "Ready", "Serving", {"policy": "cache_aware", "readyRouters": 1, "routedReplicas": 1}),
])
def test_a_routed_model_is_ready_when_a_router_and_a_server_are(routers, phase, reason, routing):
    router = None if routers is None else deployment(routers)
    s = compute_status(model({}), deployment(1), [READY_POD], CFG, NOW, router=router)
    ready = next(c for c in s["conditions"] if c["type"] == "Ready")
    assert (s["phase"], ready["reason"], s["routing"]) == (phase, reason, routing)


def test_status_says_nothing_of_routing_unless_it_did():
    plain = compute_status(model(), deployment(1), [READY_POD], CFG, NOW)
    assert "routing" not in plain and not status_changed(plain, compute_status(model(status=plain), deployment(1),
                                                                               [READY_POD], CFG, NOW))
    was_routed = model(status={"routing": {"policy": "cache_aware", "readyRouters": 1, "routedReplicas": 1}})
    assert compute_status(was_routed, deployment(1), [READY_POD], CFG, NOW)["routing"] is None  # merge patch: gone


@pytest.mark.parametrize("policy, header", [("cache_aware", None), ("consistent_hash", SESSION_HEADER),
                                            ("round_robin", None)])
def test_agents_are_told_the_session_header_when_the_policy_reads_one(policy, header):
    assert index_entry(model({"policy": policy}), CFG, True)["sessionHeader"] == header
    assert index_entry(model(), CFG, True)["sessionHeader"] is None


def test_each_client_an_agent_makes_sends_a_session_id_of_its_own(tmp_path, monkeypatch):
    from modelplane_agents import component_config, model_settings

    for name, text in config_files([(model({"policy": "consistent_hash"}), True)], CFG).items():
        (tmp_path / name).write_text(text)
    first, second = (component_config("m", path=tmp_path)["config"]["default_headers"] for _ in range(2))
    assert set(first) == set(second) == {SESSION_HEADER} and first != second
    assert set(model_settings("m", path=tmp_path).headers) == {SESSION_HEADER}
    stored = json.loads((tmp_path / "ns.m.json").read_text())["config"]
    assert "default_headers" not in stored  # one file for every pod: the id is made per client, not written


@pytest.mark.parametrize("policy, scale_out", [("cache_aware", True), ("round_robin", False), (None, False)])
def test_cache_aware_servers_serve_the_render_endpoints_it_reads_tokens_from(policy, scale_out):
    spec = model({"policy": policy}) if policy else model()
    args = by_key(render_children(spec, CFG))[("Deployment", "m")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert ("--enable-scale-out" in args) == scale_out
    own = model({"policy": "cache_aware"}, engineArgs={"enableScaleOut": False})  # the Model's engineArgs win
    own_args = by_key(render_children(own, CFG))[("Deployment", "m")]["spec"]["template"]["spec"]["containers"][0]
    assert "--enable-scale-out" not in own_args["args"]


def test_clients_reach_the_router_through_its_gate_only():
    router = by_key(render_children(model({}), CFG))[("Deployment", "m-router")]
    container = router["spec"]["template"]["spec"]["containers"][0]
    command = container["command"] + container["args"]
    gate, router_cmd = command[:command.index("--")], command[command.index("--") + 1:]
    assert gate[1].endswith("gate.py") and gate[gate.index("--listen") + 1] == "0.0.0.0:8000"
    upstream = gate[gate.index("--upstream") + 1]
    pairs = dict(zip(router_cmd, router_cmd[1:]))
    assert router_cmd[0] == "vllm-router" and f"{pairs['--host']}:{pairs['--port']}" == upstream
    assert pairs["--host"] == "127.0.0.1"  # the router's admin endpoints never leave the pod


def test_clients_of_a_model_that_scales_to_zero_retry_through_a_cold_start(tmp_path):
    from modelplane_agents import model_settings, openai_client
    from modelplane_operator.agentconfig import COLD_START_RETRIES, client_component

    zero = model({}, autoscaling={"minReplicas": 0, "maxReplicas": 2})
    assert client_component(zero, CFG)["config"]["max_retries"] == COLD_START_RETRIES
    assert "max_retries" not in client_component(model({}, autoscaling={"maxReplicas": 2}), CFG)["config"]
    for name, text in config_files([(zero, True)], CFG).items():
        (tmp_path / name).write_text(text)
    assert model_settings("m", path=tmp_path).max_retries == COLD_START_RETRIES
    assert openai_client("m", path=tmp_path).max_retries == COLD_START_RETRIES
    assert openai_client("m", path=tmp_path, max_retries=3).max_retries == 3  # the caller's own choice wins
