"""Agents: model resolution across namespaces, the injected env and ConfigMap, and Agent status."""

import json

import pytest

from modelplane_operator.agent import (agent_status, injected_env, namespace_configmap, render_agent_deployment,
                                       render_configmap, resolve)
from modelplane_operator.agentconfig import api_key_env
from modelplane_operator.config import Config
import builders

CFG = Config()
NOW = "2026-01-01T00:00:00Z"


def model(name, namespace="team-a", phase="Ready", **spec):
    return builders.model(name, namespace, source="hf://a/b", uid=f"u-{name}", phase=phase, **spec)


MODELS = {m["metadata"]["namespace"] + "/" + m["metadata"]["name"]: m for m in [
    model("qwen", apiKeySecretRef={"name": "qwen-key"}),
    model("llama", phase="Loading"),
    model("shared", namespace="platform", allowedNamespaces=["team-a"]),
    model("private", namespace="platform"),
    model("public", namespace="platform", allowedNamespaces=["*"]),
]}


def lookup(key):
    return MODELS.get(f"{key[0]}/{key[1]}")


def agent(*refs, replicas=1):
    return builders.agent("bot", "team-a", *refs, image="ghcr.io/acme/bot:1", uid="agent-uid", generation=2,
                          replicas=replicas)


def test_resolution_reasons_and_default():
    r = resolve("team-a", [{"name": "qwen"}, {"name": "llama"}, {"name": "nope"},
                           {"name": "private", "namespace": "platform"},
                           {"name": "shared", "namespace": "platform", "default": True}], lookup)
    assert [(x.name, x.reason, x.default) for x in r] == [
        ("qwen", None, False), ("llama", "NotReady", False), ("nope", "NotFound", False),
        ("private", "NotAllowed", False), ("shared", None, True)]
    assert r[3].model is None  # nothing about a refused model is injected
    assert resolve("other", [{"name": "public", "namespace": "platform"}], lookup)[0].ready
    assert resolve("team-a", [{"name": "qwen"}], lookup)[0].default  # first is the default


def test_a_model_idle_at_zero_is_usable():
    """Autoscaled to zero, a routed Model wakes on the first request: agents may use it (and their configuration
    does not change each time it goes to zero and back)."""
    idle = {"metadata": {"name": "idle", "namespace": "team-a"}, "spec": {}, "status": {"phase": "Idle"}}
    resolved = resolve("team-a", [{"name": "idle"}], lambda key: idle)[0]
    assert resolved.ready and resolved.reason is None


def test_injected_env_for_default_keyed_model_uses_secret_refs_only():
    env = {e["name"]: e for e in injected_env(resolve("team-a", [{"name": "qwen"}], lookup), CFG)}
    assert env["MODELPLANE_CONFIG_DIR"]["value"] == "/etc/modelplane"
    assert env["OPENAI_BASE_URL"]["value"] == "http://qwen.team-a.svc.cluster.local:8000/v1"
    assert env["OPENAI_MODEL"]["value"] == "qwen"
    ref = {"name": "qwen-key", "key": "api-key", "optional": True}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == ref
    assert env[api_key_env(MODELS["team-a/qwen"])]["valueFrom"]["secretKeyRef"] == ref


def test_configmap_lists_usable_models_only():
    r = resolve("team-a", [{"name": "qwen"}, {"name": "private", "namespace": "platform"}, {"name": "llama"}],
                lookup)
    data = render_configmap(agent(), r, CFG)["data"]
    index = json.loads(data["index.json"])
    assert [(m["name"], m["ready"]) for m in index["models"]] == [("qwen", True), ("llama", False)]
    assert index["default"] == "qwen"
    assert all("qwen-key" not in text or name == "index.json" for name, text in data.items())


def test_agent_deployment_mounts_config_and_keeps_user_env():
    a = agent({"name": "qwen"})
    a["spec"]["env"] = [{"name": "LOG_LEVEL", "value": "debug"}]
    dep = render_agent_deployment(a, resolve("team-a", a["spec"]["models"], lookup), CFG)
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "ghcr.io/acme/bot:1" and c["env"][-1] == {"name": "LOG_LEVEL", "value": "debug"}
    assert {"name": "modelplane-config", "mountPath": "/etc/modelplane", "readOnly": True} in c["volumeMounts"]
    assert pod["volumes"][0]["configMap"] == {"name": "bot-modelplane", "optional": True}
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "Agent"


def test_agent_status_names_the_model_that_blocks_it():
    r = resolve("team-a", [{"name": "qwen"}, {"name": "llama"}], lookup)
    st = agent_status(agent(), r, {"status": {"readyReplicas": 1, "replicas": 1}}, CFG, NOW)
    ready = st["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "ModelNotReady")
    assert "team-a/llama" in ready["message"] and st["modelSummary"] == "1/2"
    ok = agent_status(agent(), resolve("team-a", [{"name": "qwen"}], lookup),
                      {"status": {"readyReplicas": 1, "replicas": 1}}, CFG, NOW)
    assert ok["conditions"][0]["status"] == "True" and ok["models"][0]["endpoint"].startswith("http://qwen.")
    gone = agent_status(agent(), resolve("team-a", [{"name": "nope"}], lookup), None, CFG, NOW)
    assert gone["conditions"][0]["reason"] == "ModelNotFound"


def test_namespace_configmap_holds_every_model_the_namespace_may_use():
    cm = namespace_configmap("team-a", list(MODELS.values()), CFG)
    names = [m["name"] for m in json.loads(cm["data"]["index.json"])["models"]]
    assert names == ["llama", "qwen", "public", "shared"]
    assert cm["metadata"]["name"] == "modelplane-models"


def test_agent_user_env_wins_over_injected_env():
    """An Agent's own OPENAI_API_KEY (or any injected name) replaces the injected one: one entry per name, or
    server-side apply refuses the Deployment."""
    a = agent({"name": "qwen"})
    key = api_key_env(MODELS["team-a/qwen"])
    a["spec"]["env"] = [{"name": "OPENAI_API_KEY", "value": "mine"}, {"name": "MODELPLANE_CONFIG_DIR", "value": "/x"},
                        {"name": key, "value": "k"}, {"name": "LOG_LEVEL", "value": "debug"}]
    env = render_agent_deployment(a, resolve("team-a", a["spec"]["models"], lookup), CFG)[
        "spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert names[0] == "MODELPLANE_CONFIG_DIR" and names[-1] == "LOG_LEVEL"
    by_name = {e["name"]: e for e in env}
    assert by_name["OPENAI_API_KEY"] == {"name": "OPENAI_API_KEY", "value": "mine"}
    assert by_name["MODELPLANE_CONFIG_DIR"]["value"] == "/x" and by_name[key] == {"name": key, "value": "k"}
    assert by_name["OPENAI_BASE_URL"]["value"].startswith("http://qwen.")


@pytest.mark.parametrize("serves, served, rebuilt", [
    ({"team-a"}, set(), {"team-a"}),                      # a new Model: its namespace's ConfigMap
    ({"team-a", "team-b"}, {"team-a"}, {"team-a", "team-b"}),  # allowedNamespaces grew
    ({"team-a"}, {"team-a", "team-b"}, {"team-a", "team-b"}),  # shrank: team-b must drop it
    (set(), {"team-a", "team-c"}, {"team-a"}),             # deleted; team-c keeps no ConfigMap
    ({"team-a", "*"}, set(), {"team-a", "team-b", "ops"}),  # serves everyone
    ({"team-a"}, {"*"}, {"team-a", "team-b", "ops"}),       # served everyone (or unknown: the first events)
    ({"elsewhere"}, set(), set()),                          # nobody there mounts one
])
def test_only_the_configmaps_of_namespaces_a_model_serves_or_served_are_rebuilt(serves, served, rebuilt):
    from modelplane_operator.agent import audiences, configmaps_to_rebuild
    assert configmaps_to_rebuild(serves, served, {"team-a", "team-b", "ops"}) == rebuilt
    assert audiences(model("m", "team-a", allowedNamespaces=["team-b", "*"])) == {"team-a", "team-b", "*"}
