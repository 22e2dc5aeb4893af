"""Nothing secret leaks, and bad requests to the webhook are answered, not crashed on."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.integration

CANARY = "sk-modelplane-canary-7f1d2e9a"


def test_no_secret_value_appears_anywhere(kube, operator, namespace):
    kube.run("create", "secret", "generic", "canary-key", "-n", namespace, f"--from-literal=api-key={CANARY}")
    kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": "keyed", "namespace": namespace},
                "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 0, "apiKeySecretRef": {"name": "canary-key"}}})
    kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "bot", "namespace": namespace},
                "spec": {"image": "agent:1", "models": [{"name": "keyed"}]}})
    kube.wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in
                              ((kube.get("agent", "bot", namespace) or {}).get("status") or {}).get("conditions", [])),
                  what="agent ready")
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "injected", "namespace": namespace,
                                                                "labels": {"modelplane.dev/inject": "true"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    scanned = 0
    for kind in ("configmaps", "models", "agents", "deployments", "services", "pods", "events"):
        text = kube.run("get", kind, "-n", namespace, "-o", "json").stdout
        assert CANARY not in text, f"the key leaked into {kind}"
        scanned += len(json.loads(text)["items"])
    assert CANARY not in operator.log()
    assert scanned > 8
    env = kube.get("pod", "injected", namespace)["spec"]["containers"][0]["env"]
    assert {e["name"]: e for e in env}["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "canary-key"


@pytest.mark.parametrize("body", [b"not json", b"{}", json.dumps({"apiVersion": "admission.k8s.io/v1",
                                                                 "kind": "AdmissionReview", "request": {}}).encode()])
def test_malformed_admission_requests_get_an_answer(operator, body):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{operator.webhook_port}/inject", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    assert status in (200, 400, 422, 500)
    assert operator.proc.poll() is None, "the operator must survive a malformed request"


def test_network_policy_is_accepted_by_the_api_server(kube, namespace):
    from modelplane_operator.config import Config
    from modelplane_operator.render import render_network_policy

    for allowed in ([], ["team-b"], ["*"]):
        policy = render_network_policy({"metadata": {"name": "m", "namespace": namespace, "uid": "u"},
                                        "spec": {"source": "hf://a/b", "allowedNamespaces": allowed}},
                                       Config(network_policies="true"))
        policy["metadata"].pop("ownerReferences")
        kube.run("apply", "--dry-run=server", "-f", "-", input=json.dumps(policy))


def test_network_policies_admit_configured_peers_and_go_when_switched_off(kube, operator, namespace, tmp_path):
    """With policies on, a Model's NetworkPolicy also admits the platform's peers (a metrics scraper) and is put back
    when edited; the same operator restarted with policies off deletes it (read from its watch, not guessed)."""
    from harness import Operator

    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
               "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    operator.stop()
    policies = Operator(kube, tmp_path, name="with-policies")
    me = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "modelplane-system"}},
          "podSelector": {"matchLabels": {"app.kubernetes.io/name": "modelplane"}}}
    policies.env.update(MODELPLANE_NETWORK_POLICIES="true", MODELPLANE_NETWORK_POLICY_ALLOW_FROM=json.dumps([scraper]),
                        MODELPLANE_OPERATOR_PEER=json.dumps(me))
    try:
        policies.start()
        kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
                    "metadata": {"name": "guarded", "namespace": namespace},
                    "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 0}})
        policy = kube.wait_for(lambda: kube.get("networkpolicy", "guarded", namespace), what="NetworkPolicy written")
        assert scraper in policy["spec"]["ingress"][0]["from"] and me not in policy["spec"]["ingress"][0]["from"]
        # Autoscaled down to zero: the operator's pods reach the servers' /metrics and the router's request count.
        kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model",
                    "metadata": {"name": "scaled", "namespace": namespace},
                    "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 0, "routing": {},
                             "autoscaling": {"minReplicas": 0, "maxReplicas": 2}}})
        router = kube.wait_for(lambda: kube.get("networkpolicy", "scaled-router", namespace),
                               what="the router's NetworkPolicy written")
        assert router["spec"]["ingress"][1] == {"from": [me], "ports": [{"port": 29000, "protocol": "TCP"}]}
        assert me in kube.get("networkpolicy", "scaled", namespace)["spec"]["ingress"][0]["from"]
        kube.run("patch", "networkpolicy", "guarded", "-n", namespace, "--type=json", "-p",
                 json.dumps([{"op": "remove", "path": "/spec/ingress/0/from/3"}]))
        kube.wait_for(lambda: scraper in kube.get("networkpolicy", "guarded", namespace)["spec"]["ingress"][0]["from"],
                      what="the edited NetworkPolicy put back")
    finally:
        policies.stop()
        operator.start()
    kube.wait_for(lambda: kube.get("networkpolicy", "guarded", namespace) is None, timeout=60,
                  what="the NetworkPolicy deleted once policies are off")
    told = json.loads(kube.run("get", "events", "-n", namespace, "-o", "json",
                               "--field-selector=involvedObject.name=guarded,reason=Deleted").stdout)["items"]
    assert [e["message"] for e in told] == ["Deleted NetworkPolicy guarded: no longer wanted"]
    assert kube.get("deployment", "guarded", namespace) and kube.get("service", "guarded", namespace)
    assert "failed with an exception" not in policies.log()
