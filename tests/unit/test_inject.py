"""The webhook's pure parts: what a pod gets, idempotently, and a configuration that cannot take a cluster down."""

import json

import pytest

from modelplane_operator.agent import injected_env, namespace_configmap
from modelplane_operator.agentconfig import api_key_env
from modelplane_operator.config import Config
from modelplane_operator.inject import (ERROR_ANNOTATION, MODELS_ANNOTATION, NOT_SERVING, mutation, not_configured,
                                        parse_models_annotation, requested, webhook_configuration)
import builders

CFG = Config()


def model(name, namespace="team-a", **spec):
    return builders.model(name, namespace, source="hf://a/b", uid=name, phase="Ready", **spec)


MODELS = [model("qwen"), model("llama"), model("private", "platform")]
TUNED = model("tuned", adapters=[{"name": "sql", "source": "hf://a/sql"}, {"name": "triage", "source": "hf://a/t"}])
TUNED["status"]["adapters"] = [{"name": "sql", "ready": True, "loadedReplicas": 1},
                               {"name": "triage", "ready": False, "loadedReplicas": 0, "reason": "Loading"}]


def lookup(key):
    return next((m for m in MODELS if (m["metadata"]["namespace"], m["metadata"]["name"]) == key), None)


def pod(annotations=None):
    return {"metadata": {"name": "p", "annotations": annotations or {}},
            "spec": {"containers": [{"name": "a", "env": [{"name": "KEEP", "value": "1"}]}, {"name": "b"}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}


def apply(p, fields):
    out = {**p, "metadata": {**p["metadata"], "annotations": fields["annotations"]}}
    out["spec"] = {**p["spec"], "containers": fields["containers"], "volumes": fields["volumes"]}
    return out


@pytest.mark.parametrize("value, refs", [
    ("qwen", [("qwen", "", "")]),
    ("qwen, platform/shared", [("qwen", "", ""), ("shared", "platform", "")]),
    ("qwen:sql", [("qwen", "", "sql")]),
    ("platform/shared:sql", [("shared", "platform", "sql")]),
    ("qwen, qwen:sql ,platform/shared:triage,", [("qwen", "", ""), ("qwen", "", "sql"),
                                                  ("shared", "platform", "triage")]),
])
def test_annotation_names_models_and_adapters_first_is_default(value, refs):
    assert parse_models_annotation(value) == [{"name": name, "namespace": ns, "adapter": adapter, "default": i == 0}
                                              for i, (name, ns, adapter) in enumerate(refs)]


def test_without_annotation_every_visible_model_and_no_default_when_several():
    r = requested(pod(), "team-a", MODELS, lookup)
    assert [x.name for x in r] == ["llama", "qwen"] and not any(x.default for x in r)


def test_every_container_gets_env_and_mount_and_injection_is_idempotent():
    p = pod({"modelplane.dev/models": "qwen"})
    fields, warnings = mutation(p, requested(p, "team-a", MODELS, lookup), CFG)
    assert warnings == []
    for c in fields["containers"]:
        names = [e["name"] for e in c["env"]]
        assert "MODELPLANE_CONFIG_DIR" in names and "OPENAI_BASE_URL" in names
        assert c["volumeMounts"] == [{"name": "modelplane-config", "mountPath": "/etc/modelplane", "readOnly": True}]
    assert fields["containers"][0]["env"][0] == {"name": "KEEP", "value": "1"}
    assert [v["name"] for v in fields["volumes"]] == ["data", "modelplane-config"]
    once = apply(p, fields)
    again, _ = mutation(once, requested(once, "team-a", MODELS, lookup), CFG)
    assert apply(once, again) == once


def test_refused_model_is_not_injected_and_explained():
    p = pod({"modelplane.dev/models": "platform/private"})
    fields, warnings = mutation(p, requested(p, "team-a", MODELS, lookup), CFG)
    assert warnings == ["modelplane: model platform/private: NotAllowed (not injected)"]
    assert "OPENAI_BASE_URL" not in [e["name"] for e in fields["containers"][0]["env"]]
    assert fields["annotations"]["modelplane.dev/injection-error"] == "model platform/private: NotAllowed"


def test_webhook_configuration_is_safe_by_default():
    cfg = webhook_configuration({"url": "https://127.0.0.1:9443/inject"}, excluded_namespaces=("kube-system", "mp"))
    for hook in cfg["webhooks"]:
        assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] <= 5
        assert hook["rules"][0]["operations"] == ["CREATE"] and hook["rules"][0]["resources"] == ["pods"]
        exclude = hook["namespaceSelector"]["matchExpressions"][0]
        assert exclude == {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "mp"]}
    assert cfg["webhooks"][0]["objectSelector"] == {"matchLabels": {"modelplane.dev/inject": "true"}}


def injected(p, models=MODELS):
    """The pod as the webhook leaves it, when `models` are what exists."""
    def find(key):
        return next((m for m in models if (m["metadata"]["namespace"], m["metadata"]["name"]) == key), None)
    return apply(p, mutation(p, requested(p, "team-a", models, find), CFG)[0])


@pytest.mark.parametrize("case, created, reason", [
    ("configured", lambda: injected(pod({MODELS_ANNOTATION: "qwen"})), None),
    ("webhook did not answer", lambda: pod({MODELS_ANNOTATION: "qwen"}), "webhook did not answer"),
    ("view incomplete", lambda: pod({ERROR_ANNOTATION: NOT_SERVING}), "view of Models was not complete"),
    ("Model appeared later", lambda: injected(pod({MODELS_ANNOTATION: "qwen,later"}), MODELS),
     "team-a/later can be used now"),
    ("Model still missing", lambda: injected(pod({MODELS_ANNOTATION: "qwen,never"})), None),
])
def test_not_configured_says_why_a_pod_must_be_recreated(case, created, reason):
    now = [*MODELS, model("later")]
    find = lambda key: next((m for m in now if (m["metadata"]["namespace"], m["metadata"]["name"]) == key), None)  # noqa: E731
    got = not_configured(created(), "team-a", find)
    assert (got is None) if reason is None else (reason in got), (case, got)


def test_namespace_index_names_a_default_only_when_there_is_one_model_to_choose():
    one = namespace_configmap("solo", [model("only", "solo")], CFG)
    assert json.loads(one["data"]["index.json"])["default"] == "only"
    several = namespace_configmap("team-a", MODELS, CFG)
    assert json.loads(several["data"]["index.json"])["default"] is None
    # the webhook follows the same rule for the env
    env = {e["name"] for e in mutation(pod(), requested(pod(), "solo", [model("only", "solo")], lambda k: model(
        "only", "solo")), CFG)[0]["containers"][0]["env"]}
    assert "OPENAI_MODEL" in env


def test_webhook_sees_only_watched_namespaces_when_some_are_watched():
    cfg = webhook_configuration({"url": "https://x/inject"}, watched_namespaces=("b", "a"))
    for hook in cfg["webhooks"]:
        assert {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]} in \
            hook["namespaceSelector"]["matchExpressions"]
    assert not any(e["operator"] == "In" and e["key"] == "kubernetes.io/metadata.name"
                   for h in webhook_configuration({"url": "https://x/inject"})["webhooks"]
                   for e in h["namespaceSelector"]["matchExpressions"])


def with_tuned(key):
    return TUNED if key == ("team-a", "tuned") else lookup(key)


@pytest.mark.parametrize("annotation, model_env, host, injected_as, warning", [
    ("tuned", "tuned", "tuned", "team-a/tuned", None),
    ("tuned:sql", "sql", "tuned", "team-a/tuned:sql", None),
    ("team-a/tuned:triage,qwen", "triage", "tuned", "team-a/tuned:triage,team-a/qwen", None),  # loading: injected
    ("tuned:typo", "typo", "tuned", "team-a/tuned:typo",
     "modelplane: model team-a/tuned:typo: AdapterNotFound (injected"),
    ("qwen:sql", "sql", "qwen", "team-a/qwen:sql", "modelplane: model team-a/qwen:sql: AdapterNotFound (injected"),
])
def test_a_pod_names_an_adapter_as_model_colon_adapter(annotation, model_env, host, injected_as, warning):
    """The adapter's name is what the pod sends (OPENAI_MODEL), on its Model's endpoint; an adapter the Model does
    not list is injected (it serves once added, no pod restart) but warned about, as a typo most likely is."""
    p = pod({MODELS_ANNOTATION: annotation})
    fields, warnings = mutation(p, requested(p, "team-a", [*MODELS, TUNED], with_tuned), CFG)
    env = {e["name"]: e.get("value") for e in fields["containers"][0]["env"]}
    assert env["OPENAI_MODEL"] == model_env
    assert env["OPENAI_BASE_URL"] == f"http://{host}.team-a.svc.cluster.local:8000/v1"
    assert fields["annotations"]["modelplane.dev/injected"] == injected_as
    assert ERROR_ANNOTATION not in fields["annotations"]
    assert [w[:len(warning)] for w in warnings] == ([warning] if warning else [])


def test_without_annotation_every_visible_model_and_each_of_its_adapters():
    r = requested(pod(), "team-a", [*MODELS, TUNED], with_tuned)
    assert [(x.key, x.reason, x.default) for x in r] == [
        ("team-a/llama", None, False), ("team-a/qwen", None, False), ("team-a/tuned", None, False),
        ("team-a/tuned:sql", None, False), ("team-a/tuned:triage", "AdapterNotReady", False)]
    index = json.loads(namespace_configmap("team-a", [*MODELS, TUNED], CFG)["data"]["index.json"])
    assert [(m["name"], m["adapter"], m["servedModelName"], m["ready"], m["file"]) for m in index["models"]] == [
        ("llama", None, "llama", True, "team-a.llama.json"), ("qwen", None, "qwen", True, "team-a.qwen.json"),
        ("tuned", None, "tuned", True, "team-a.tuned.json"), ("tuned", "sql", "sql", True, "team-a.tuned.sql.json"),
        ("tuned", "triage", "triage", False, "team-a.tuned.triage.json")]
    assert index["default"] is None


def test_the_only_model_of_a_namespace_is_its_default_not_one_of_its_adapters():
    solo = {**TUNED, "metadata": {**TUNED["metadata"], "namespace": "solo"}}
    cm = namespace_configmap("solo", [solo], CFG)
    assert json.loads(cm["data"]["index.json"])["default"] == "tuned"
    assert sorted(cm["data"]) == ["index.json", "solo.tuned.json", "solo.tuned.sql.json", "solo.tuned.triage.json"]
    r = requested(pod(), "solo", [solo], lambda key: solo)
    env = {e["name"]: e.get("value") for e in injected_env(r, CFG)}
    assert env["OPENAI_MODEL"] == "tuned" and [x.default for x in r] == [True, False, False]


def test_a_keyed_models_base_and_adapters_share_one_key_variable():
    keyed = model("tuned", apiKeySecretRef={"name": "k"}, adapters=[{"name": "sql", "source": "hf://a/sql"}])
    p = pod({MODELS_ANNOTATION: "tuned:sql,tuned"})
    fields, _ = mutation(p, requested(p, "team-a", [keyed], lambda key: keyed), CFG)
    names = [e["name"] for e in fields["containers"][0]["env"]]
    assert len(names) == len(set(names))
    assert names.count(api_key_env(keyed)) == 1 and "OPENAI_API_KEY" in names


def test_not_configured_knows_adapters_by_their_own_name():
    """A pod that asked for an adapter of a Model that did not exist yet is told to restart once it does."""
    created = injected(pod({MODELS_ANNOTATION: "qwen,tuned:sql"}))
    assert created["metadata"]["annotations"]["modelplane.dev/injected"] == "team-a/qwen"
    assert "team-a/tuned:sql can be used now" in not_configured(created, "team-a", with_tuned)
    again = injected(pod({MODELS_ANNOTATION: "qwen,tuned:sql"}), [*MODELS, TUNED])
    assert not_configured(again, "team-a", with_tuned) is None
