"""The real API server calls the operator's webhook over TLS and opted-in pods get the configuration."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def model(name, namespace, **spec):
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 0, **spec}}


def pod(name, namespace, labels=None, annotations=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app", "image": "python:3.11-slim",
                                     "env": [{"name": "KEEP", "value": "me"}]}]}}


def env_of(p):
    return {e["name"]: e for e in p["spec"]["containers"][0].get("env") or []}


def test_labelled_pod_is_injected_and_others_are_not(kube, operator, namespace):
    kube.apply(model("qwen", namespace, apiKeySecretRef={"name": "qwen-key"}))
    kube.wait_for(lambda: kube.get("deployment", "qwen", namespace), what="model reconciled")
    kube.apply(pod("agent", namespace, labels={"modelplane.dev/inject": "true"}))
    p = kube.get("pod", "agent", namespace)
    env = env_of(p)
    assert env["KEEP"]["value"] == "me"
    assert env["MODELPLANE_CONFIG_DIR"]["value"] == "/etc/modelplane"
    assert env["OPENAI_BASE_URL"]["value"] == f"http://qwen.{namespace}.svc.cluster.local:8000/v1"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "qwen-key"
    assert {"name": "modelplane-config", "configMap": {"name": "modelplane-models", "optional": True,
                                                       "defaultMode": 420}} in p["spec"]["volumes"]
    assert p["metadata"]["annotations"]["modelplane.dev/injected"] == f"{namespace}/qwen"
    cm = kube.wait_for(lambda: kube.get("configmap", "modelplane-models", namespace), what="namespace ConfigMap")
    assert [m["name"] for m in json.loads(cm["data"]["index.json"])["models"]] == ["qwen"]

    kube.apply(pod("plain", namespace))
    assert "MODELPLANE_CONFIG_DIR" not in env_of(kube.get("pod", "plain", namespace))
    kube.apply(pod(f"sys-{namespace}", "kube-system", labels={"modelplane.dev/inject": "true"}))
    try:
        assert "MODELPLANE_CONFIG_DIR" not in env_of(kube.get("pod", f"sys-{namespace}", "kube-system"))
    finally:
        kube.run("delete", "pod", f"sys-{namespace}", "-n", "kube-system", "--wait=false")

    # The namespace ConfigMap follows Model changes, so mounted configuration stays current without restarts.
    kube.apply(model("second", namespace))
    kube.wait_for(lambda: len(json.loads(kube.get("configmap", "modelplane-models", namespace)["data"]["index.json"])
                              ["models"]) == 2, what="second model in the namespace ConfigMap")


def test_namespace_opt_in_and_pod_opt_out(kube, operator, namespace):
    kube.apply(model("qwen", namespace))
    kube.run("label", "namespace", namespace, "modelplane.dev/inject=enabled")
    kube.apply(pod("in", namespace))
    kube.apply(pod("out", namespace, labels={"modelplane.dev/inject": "false"}))
    assert "MODELPLANE_CONFIG_DIR" in env_of(kube.get("pod", "in", namespace))
    assert "MODELPLANE_CONFIG_DIR" not in env_of(kube.get("pod", "out", namespace))


def test_cross_namespace_reference_refused_with_a_warning(kube, operator, namespace):
    other = namespace + "-m"
    kube.run("create", "namespace", other)
    try:
        kube.apply(model("private", other))
        kube.wait_for(lambda: kube.get("deployment", "private", other), what="model reconciled")
        proc = kube.apply(pod("nosy", namespace, labels={"modelplane.dev/inject": "true"},
                              annotations={"modelplane.dev/models": f"{other}/private"}))
        assert f"model {other}/private: NotAllowed" in proc.stderr  # kubectl prints admission warnings
        p = kube.get("pod", "nosy", namespace)
        assert "OPENAI_BASE_URL" not in env_of(p)
        assert "NotAllowed" in p["metadata"]["annotations"]["modelplane.dev/injection-error"]
        kube.run("patch", "model", "private", "-n", other, "--type=merge", "-p",
                 json.dumps({"spec": {"allowedNamespaces": [namespace]}}))
        kube.wait_for(lambda: namespace in (kube.get("model", "private", other)["spec"].get("allowedNamespaces") or []))
        kube.apply(pod("allowed", namespace, labels={"modelplane.dev/inject": "true"},
                       annotations={"modelplane.dev/models": f"{other}/private"}))
        env = env_of(kube.wait_for(lambda: kube.get("pod", "allowed", namespace)))
        assert env["OPENAI_BASE_URL"]["value"] == f"http://private.{other}.svc.cluster.local:8000/v1"
    finally:
        kube.run("delete", "namespace", other, "--wait=false", check=False)


def test_pods_are_admitted_while_the_webhook_is_down(kube, operator, namespace):
    operator.stop()
    try:
        kube.apply(pod("during-outage", namespace, labels={"modelplane.dev/inject": "true"}))
        assert kube.get("pod", "during-outage", namespace) is not None
        assert "MODELPLANE_CONFIG_DIR" not in env_of(kube.get("pod", "during-outage", namespace))
    finally:
        operator.start()
    kube.apply(pod("after", namespace, labels={"modelplane.dev/inject": "true"}))
    assert "MODELPLANE_CONFIG_DIR" in env_of(kube.get("pod", "after", namespace))
