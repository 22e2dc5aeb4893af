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


def model(name, namespace="team-a", phase="Ready", adapters=(), **spec):
    """A Model; `adapters`: {name: status.adapters[].ready, or None when status does not list it yet}."""
    out = builders.model(name, namespace, source="hf://a/b", uid=f"u-{name}", phase=phase, **spec)
    if adapters:
        out["spec"]["adapters"] = [{"name": a, "source": f"hf://a/{a}"} for a in adapters]
        out["status"]["adapters"] = [{"name": a, "ready": r, "loadedReplicas": int(r),
                                      **({} if r else {"reason": "RankTooLarge", "message": "rank 32 > 16"})}
                                     for a, r in adapters.items() if r is not None]
    return out


MODELS = {m["metadata"]["namespace"] + "/" + m["metadata"]["name"]: m for m in [
    model("qwen", apiKeySecretRef={"name": "qwen-key"}),
    model("llama", phase="Loading"),
    model("shared", namespace="platform", allowedNamespaces=["team-a"]),
    model("private", namespace="platform"),
    model("public", namespace="platform", allowedNamespaces=["*"]),
    model("tuned", adapters={"sql": True, "triage": False, "new": None}, apiKeySecretRef={"name": "tuned-key"}),
    model("cold", phase="Loading", adapters={"sql": False}),
    model("idle", phase="Idle", adapters={"sql": False}),
    model("shared-tuned", namespace="platform", allowedNamespaces=["team-a"], adapters={"sql": True}),
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
    assert names == ["cold", "cold", "idle", "idle", "llama", "qwen", "tuned", "tuned", "tuned", "tuned", "public",
                     "shared", "shared-tuned", "shared-tuned"]  # a Model, then its adapters
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


@pytest.mark.parametrize("ref, reason, served", [
    ({"name": "tuned"}, None, "tuned"),                                 # the Model itself, as before
    ({"name": "tuned", "adapter": "sql"}, None, "sql"),                 # loaded on every ready replica
    ({"name": "tuned", "adapter": "triage"}, "AdapterNotReady", "triage"),  # status says it is not
    ({"name": "tuned", "adapter": "new"}, "AdapterNotReady", "new"),    # listed, not in status yet
    ({"name": "tuned", "adapter": "typo"}, "AdapterNotFound", "typo"),  # not in spec.adapters
    ({"name": "qwen", "adapter": "sql"}, "AdapterNotFound", "sql"),     # a Model without adapters
    ({"name": "cold", "adapter": "sql"}, "NotReady", "sql"),            # the Model itself is not ready
    ({"name": "cold", "adapter": "typo"}, "AdapterNotFound", "typo"),   # an unknown adapter says so first
    ({"name": "idle", "adapter": "sql"}, None, "sql"),                  # at zero: the replica that wakes loads it
    ({"name": "shared-tuned", "namespace": "platform", "adapter": "sql"}, None, "sql"),
    ({"name": "private", "namespace": "platform", "adapter": "sql"}, "NotAllowed", None),
    ({"name": "nope", "adapter": "sql"}, "NotFound", None),
])
def test_an_adapter_is_resolved_like_its_model_then_by_its_own_state(ref, reason, served):
    """An unknown adapter, like a Model not ready, keeps its Model's endpoint (it serves, without restarting a pod,
    once added and loaded); a refused or missing Model gives nothing."""
    [r] = resolve("team-a", [ref], lookup)
    assert (r.adapter, r.reason, r.ready) == (ref.get("adapter", ""), reason, reason is None)
    status = agent_status(agent(ref), [r], {"status": {"readyReplicas": 1, "replicas": 1}}, CFG, NOW)
    entry = status["models"][0]
    assert (entry.get("adapter"), entry.get("servedModelName"), entry.get("reason")) == (ref.get("adapter"), served,
                                                                                        reason)
    if served:
        assert entry["endpoint"] == f"http://{ref['name']}.{r.namespace}.svc.cluster.local:8000/v1"


def test_an_agent_uses_a_models_base_and_its_adapters_each_under_its_own_name():
    r = resolve("team-a", [{"name": "tuned", "adapter": "sql"}, {"name": "tuned"},
                           {"name": "tuned", "adapter": "triage"}], lookup)
    data = render_configmap(agent(), r, CFG)["data"]
    index = json.loads(data["index.json"])
    assert index["default"] == "tuned:sql"
    assert [(m["name"], m["adapter"], m["servedModelName"], m["ready"], m["file"]) for m in index["models"]] == [
        ("tuned", "sql", "sql", True, "team-a.tuned.sql.json"), ("tuned", None, "tuned", True, "team-a.tuned.json"),
        ("tuned", "triage", "triage", False, "team-a.tuned.triage.json")]
    assert {m["apiKeyEnv"] for m in index["models"]} == {api_key_env(MODELS["team-a/tuned"])}
    assert {m["endpoint"] for m in index["models"]} == {"http://tuned.team-a.svc.cluster.local:8000/v1"}
    sql = json.loads(data["team-a.tuned.sql.json"])
    assert (sql["label"], sql["config"]["model"]) == ("tuned:sql", "sql")
    assert sql["description"] == "modelplane Model team-a/tuned, LoRA adapter sql"
    assert json.loads(data["team-a.tuned.json"])["config"]["model"] == "tuned"
    env = render_agent_deployment(agent(), r, CFG)["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["OPENAI_MODEL"]["value"] == "sql"  # the default is the adapter: its name is what requests send
    assert by_name["OPENAI_BASE_URL"]["value"] == "http://tuned.team-a.svc.cluster.local:8000/v1"
    assert [e["name"] for e in env].count(api_key_env(MODELS["team-a/tuned"])) == 1  # one key for base and adapters


@pytest.mark.parametrize("ref, reason, message", [
    ({"name": "tuned", "adapter": "typo"}, "AdapterNotFound", "model team-a/tuned has no adapter typo (spec.adapters)"),
    ({"name": "tuned", "adapter": "triage"}, "AdapterNotReady",
     "adapter triage of model team-a/tuned is not loaded on every ready replica (RankTooLarge: rank 32 > 16)"),
    ({"name": "tuned", "adapter": "new"}, "AdapterNotReady",
     "adapter new of model team-a/tuned is not loaded on every ready replica (not reported yet)"),
    ({"name": "cold", "adapter": "sql"}, "ModelNotReady", "model team-a/cold is not ready"),
])
def test_agent_status_names_the_adapter_that_blocks_it(ref, reason, message):
    st = agent_status(agent(ref), resolve("team-a", [ref], lookup), {"status": {"readyReplicas": 1, "replicas": 1}},
                      CFG, NOW)
    ready = st["conditions"][0]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", reason, message)
    assert st["modelSummary"] == "0/1"


def test_namespace_configmap_lists_each_adapter_of_each_model_the_namespace_may_use():
    index = json.loads(namespace_configmap("team-a", list(MODELS.values()), CFG)["data"]["index.json"])
    adapters = [(m["name"], m["namespace"], m["adapter"], m["ready"]) for m in index["models"] if m["adapter"]]
    assert adapters == [("cold", "team-a", "sql", False), ("idle", "team-a", "sql", True),
                        ("tuned", "team-a", "sql", True), ("tuned", "team-a", "triage", False),
                        ("tuned", "team-a", "new", False), ("shared-tuned", "platform", "sql", True)]
    assert len({m["file"] for m in index["models"]}) == len(index["models"])
