"""The real API server calls the operator's webhook over TLS and opted-in pods get the configuration."""

from __future__ import annotations

import json
import time

import pytest
import builders

pytestmark = pytest.mark.integration


def model(name, namespace, **spec):
    return builders.model(name, namespace, gpus=0, **spec)


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


def events_about(kube, namespace, name, reason):
    out = kube.run("get", "events", "-n", namespace, "-o", "json",
                   f"--field-selector=involvedObject.name={name},reason={reason}").stdout
    return [e["message"] for e in json.loads(out)["items"]]


def test_pods_are_admitted_while_the_webhook_is_down_and_told_so(kube, operator, namespace):
    kube.apply(model("qwen", namespace))
    kube.wait_for(lambda: kube.get("deployment", "qwen", namespace), what="model reconciled")
    operator.stop()
    try:
        kube.apply(pod("during-outage", namespace, labels={"modelplane.dev/inject": "true"}))
        assert kube.get("pod", "during-outage", namespace) is not None
        assert "MODELPLANE_CONFIG_DIR" not in env_of(kube.get("pod", "during-outage", namespace))
    finally:
        operator.start()
    kube.apply(pod("after", namespace, labels={"modelplane.dev/inject": "true"}))
    assert "MODELPLANE_CONFIG_DIR" in env_of(kube.get("pod", "after", namespace))
    # Back up, the operator finds the pod it could not configure and says what to do, on the pod itself.
    told = kube.wait_for(lambda: events_about(kube, namespace, "during-outage", "NotConfigured"), timeout=60,
                         what="NotConfigured Event on the pod admitted during the outage")
    assert "webhook did not answer" in told[0] and "rollout restart" in told[0]
    assert not events_about(kube, namespace, "after", "NotConfigured")


def test_pod_created_before_its_model_is_told_to_restart(kube, operator, namespace):
    kube.apply(model("qwen", namespace))
    kube.apply(pod("early", namespace, labels={"modelplane.dev/inject": "true"},
                   annotations={"modelplane.dev/models": "qwen,later"}))
    assert "NotFound" in kube.get("pod", "early", namespace)["metadata"]["annotations"]["modelplane.dev/injection-error"]
    kube.apply(model("later", namespace))
    told = kube.wait_for(lambda: events_about(kube, namespace, "early", "NotConfigured"), timeout=60,
                         what="NotConfigured Event once the Model exists")
    assert f"{namespace}/later can be used now" in told[0]


def test_dry_run_admission_writes_nothing(kube, operator, namespace):
    """sideEffects: NoneOnDryRun: a server-side dry run is mutated but makes no ConfigMap."""
    kube.apply(model("qwen", namespace))
    kube.wait_for(lambda: kube.get("model", "qwen", namespace).get("status"), what="model reconciled")
    manifest = json.dumps(pod("dry", namespace, labels={"modelplane.dev/inject": "true"}))
    out = kube.run("create", "--dry-run=server", "-o", "json", "-f", "-", input=manifest).stdout
    assert "OPENAI_BASE_URL" in env_of(json.loads(out))  # the dry run shows the mutation
    kube.run("wait", "--for=create", "--timeout=5s", "configmap/modelplane-models", "-n", namespace, check=False)
    assert kube.get("configmap", "modelplane-models", namespace) is None
    kube.apply(pod("real", namespace, labels={"modelplane.dev/inject": "true"}))
    kube.wait_for(lambda: kube.get("configmap", "modelplane-models", namespace), what="ConfigMap of a real admission")


def test_namespace_configmap_edited_or_deleted_by_hand_is_put_back(kube, operator, namespace):
    kube.apply(model("qwen", namespace))
    kube.apply(pod("app", namespace, labels={"modelplane.dev/inject": "true"}))
    kube.wait_for(lambda: kube.get("configmap", "modelplane-models", namespace), what="namespace ConfigMap")

    def settled():  # made by the webhook, then kept in step with the Model's phase: the same twice, 1 s apart
        first = kube.get("configmap", "modelplane-models", namespace)
        time.sleep(1)
        return first if first["data"] == kube.get("configmap", "modelplane-models", namespace)["data"] else None
    cm = kube.wait_for(settled, what="namespace ConfigMap settled")
    index = cm["data"]["index.json"]
    kube.run("patch", "configmap", "modelplane-models", "-n", namespace, "--type=merge", "-p",
             json.dumps({"data": {"index.json": "{}", "extra": "x"}}))
    kube.wait_for(lambda: kube.get("configmap", "modelplane-models", namespace)["data"] == cm["data"],
                  what="edited ConfigMap put back")
    kube.run("delete", "configmap", "modelplane-models", "-n", namespace)
    back = kube.wait_for(lambda: kube.get("configmap", "modelplane-models", namespace), what="deleted ConfigMap back")
    assert back["data"]["index.json"] == index
