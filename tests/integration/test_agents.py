"""Agents on the real control plane: injection, live updates as Models come and go, and namespace boundaries."""

from __future__ import annotations

import json
import time

import pytest
import builders

pytestmark = pytest.mark.integration


def model(name, namespace, **spec):
    return builders.model(name, namespace, gpus=0, **spec)


def agent(name, namespace, *models):
    return builders.agent(name, namespace, *models, command=["python", "-m", "bot"])


def ready(obj):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def index_of(kube, namespace, name):
    cm = kube.get("configmap", name, namespace)
    return json.loads(cm["data"]["index.json"]) if cm else None


def test_agent_gets_its_models_injected_and_follows_them(kube, operator, namespace):
    kube.apply(model("qwen", namespace, apiKeySecretRef={"name": "qwen-key"}))
    kube.apply(agent("bot", namespace, {"name": "qwen"}, {"name": "later"}))
    dep = kube.wait_for(lambda: kube.get("deployment", "bot", namespace), what="agent deployment")
    pod = dep["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["OPENAI_BASE_URL"]["value"] == f"http://qwen.{namespace}.svc.cluster.local:8000/v1"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "qwen-key"
    assert pod["volumes"][0]["configMap"]["name"] == "bot-modelplane"

    # `later` does not exist yet: the Agent says so by name.
    a = kube.wait_for(lambda: (a := kube.get("agent", "bot", namespace)) and ready(a).get("reason") == "ModelNotFound"
                      and a, what="ModelNotFound")
    assert f"{namespace}/later" in ready(a)["message"]

    # Creating it updates the Agent's configuration and status, without restarting anything.
    started = time.monotonic()
    kube.apply(model("later", namespace, servedModelName="later-v1"))
    a = kube.wait_for(lambda: (a := kube.get("agent", "bot", namespace)) and ready(a).get("status") == "True" and a,
                      timeout=30, what="agent ready")
    assert time.monotonic() - started < 20
    assert a["status"]["modelSummary"] == "2/2"
    assert {m["name"]: m["ready"] for m in a["status"]["models"]} == {"qwen": True, "later": True}
    idx = kube.wait_for(lambda: (i := index_of(kube, namespace, "bot-modelplane")) and len(i["models"]) == 2 and i,
                        what="index with both models")
    assert idx["default"] == "qwen"
    cm = kube.get("configmap", "bot-modelplane", namespace)
    later = json.loads(cm["data"][f"{namespace}.later.json"])
    assert later["config"]["model"] == "later-v1"

    # A served-name change reaches the mounted configuration.
    kube.run("patch", "model", "later", "-n", namespace, "--type=merge", "-p", '{"spec":{"servedModelName":"later-v2"}}')
    kube.wait_for(lambda: json.loads(kube.get("configmap", "bot-modelplane", namespace)["data"][
        f"{namespace}.later.json"])["config"]["model"] == "later-v2", what="served name propagated")

    # Deleting a Model makes the Agent not Ready, naming it.
    kube.run("delete", "model", "later", "-n", namespace)
    a = kube.wait_for(lambda: (a := kube.get("agent", "bot", namespace)) and ready(a).get("reason") == "ModelNotFound"
                      and a, what="not ready after delete")
    assert f"{namespace}/later" in ready(a)["message"]
    row = kube.run("get", "agents", "-n", namespace).stdout.splitlines()
    assert row[0].split() == ["NAME", "REPLICAS", "MODELS", "READY", "AGE"]
    assert row[1].split()[:4] == ["bot", "1", "1/2", "False"]


def test_cross_namespace_needs_the_models_consent(kube, operator, namespace):
    other = namespace + "-m"
    kube.run("create", "namespace", other)
    try:
        kube.apply(model("shared", other))
        kube.apply(agent("bot", namespace, {"name": "shared", "namespace": other}))
        a = kube.wait_for(lambda: (a := kube.get("agent", "bot", namespace)) and
                          ready(a).get("reason") == "ModelNotAllowed" and a, what="not allowed")
        assert "spec.allowedNamespaces" in ready(a)["message"]
        env = {e["name"] for e in kube.get("deployment", "bot", namespace)["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert "OPENAI_BASE_URL" not in env  # nothing of a refused model is injected
        kube.run("patch", "model", "shared", "-n", other, "--type=merge", "-p",
                 json.dumps({"spec": {"allowedNamespaces": [namespace]}}))
        a = kube.wait_for(lambda: (a := kube.get("agent", "bot", namespace)) and ready(a).get("status") == "True"
                          and a, what="allowed")
        dep = kube.get("deployment", "bot", namespace)
        env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["OPENAI_BASE_URL"]["value"] == f"http://shared.{other}.svc.cluster.local:8000/v1"
    finally:
        kube.run("delete", "namespace", other, "--wait=false", check=False)


def test_agent_admission_rules(kube, namespace):
    two_defaults = agent("bad", namespace, {"name": "a", "default": True}, {"name": "b", "default": True})
    proc = kube.apply(two_defaults, check=False)
    assert proc.returncode != 0 and "spec.models" in proc.stderr and "at most one model" in proc.stderr
    twice = agent("bad", namespace, {"name": "a"}, {"name": "a"})
    proc = kube.apply(twice, check=False)
    assert proc.returncode != 0 and "spec.models[1]" in proc.stderr and "Duplicate value" in proc.stderr
    no_models = agent("bad", namespace)
    proc = kube.apply(no_models, check=False)
    assert proc.returncode != 0 and "spec.models" in proc.stderr
    proc = kube.apply(model("m", namespace, allowedNamespaces=["Not A Namespace"]), check=False)
    assert proc.returncode != 0 and "spec.allowedNamespaces[0]" in proc.stderr
