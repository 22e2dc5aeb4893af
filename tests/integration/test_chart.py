"""The Helm chart with the real helm binary on the local control plane: render, install, run the operator with the
chart's ServiceAccount token, upgrade, uninstall."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import Kube
from localcluster import Cluster, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelplane"
RELEASE, NS = "mp", "modelplane-system"
KUBE_VERSION = "1.34.4"

# Every permission the chart grants (in a ClusterRole, or Roles when namespaces are listed), reviewed: a new one fails this test until it is added here on purpose.
REVIEWED_RULES = {
    ("modelplane.dev", "models", "get,list,patch,watch"),
    ("modelplane.dev", "agents", "get,list,patch,watch"),
    ("modelplane.dev", "models/status", "patch"),
    ("modelplane.dev", "agents/status", "patch"),
    ("modelplane.dev", "models/finalizers", "update"),
    ("modelplane.dev", "agents/finalizers", "update"),
    ("", "namespaces", "list"),
    # delete: a routed Model's router, its Service for the server pods and its identity, once routing is off
    ("apps", "deployments", "create,delete,get,list,patch,watch"),
    ("", "services", "create,delete,get,list,patch,watch"),
    ("", "configmaps", "create,delete,get,list,patch,watch"),
    ("", "serviceaccounts", "create,delete,get,list,patch,watch"),
    ("rbac.authorization.k8s.io", "roles", "create,delete,get,list,patch,watch"),
    ("rbac.authorization.k8s.io", "rolebindings", "create,delete,get,list,patch,watch"),
    ("keda.sh", "scaledobjects", "create,delete,get,patch"),
    ("", "pods", "get,list,watch"),  # get: granted to the router's Role, so the operator holds it too
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list,watch"),
    ("kopf.dev", "clusterkopfpeerings", "create,get,list,patch,watch"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get,patch"),
    ("", "secrets", "get,update"),
    ("", "secrets", "create"),
    ("networking.k8s.io", "networkpolicies", "create,delete,get,list,patch,watch"),  # networkPolicies: true
    ("networking.k8s.io", "networkpolicies", "delete,get,list,watch"),  # false: deletes the ones written before
}


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    """A control plane of its own: the chart installs the CRDs itself, and no other operator runs there."""
    cluster = Cluster(tmp_path_factory.mktemp("chart-cluster"))
    cluster.up()
    yield Kube(cluster)
    cluster.down()


def helm(kube, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(Path(kube.kubectl_bin).parent / "helm"), *args], capture_output=True, text=True,
                          env=kube.env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: {proc.stderr}")
    return proc


def template(kube, *sets) -> list[dict]:
    args = ["template", RELEASE, str(CHART), "-n", NS, "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(kube, *args).stdout) if d]


def rules_of(docs) -> set:
    out = set()
    for d in docs:
        if d["kind"] in ("ClusterRole", "Role"):
            for r in d["rules"]:
                for group in r["apiGroups"]:
                    for res in r["resources"]:
                        out.add((group, res, ",".join(sorted(r["verbs"]))))
    return out


def test_chart_crds_are_the_repositorys():
    for crd in (REPO / "crds").glob("*.yaml"):
        assert (CHART / "files" / "crds" / crd.name).read_bytes() == crd.read_bytes(), "stale: run `make crds`"
    assert {p.name for p in (CHART / "files" / "crds").glob("*.yaml")} == {p.name for p in (REPO / "crds").glob("*.yaml")}


def test_lint_template_and_server_side_dry_run(kube):
    assert "0 chart(s) failed" in helm(kube, "lint", str(CHART), "--kube-version", KUBE_VERSION).stdout
    kube.run("create", "namespace", NS, "--dry-run=client", "-o", "yaml")
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for sets in [(), ("replicas=2", "webhook.failurePolicy=Fail", "webhook.excludedNamespaces={kube-system,infra}"),
                 ("watchNamespaces={team-a,team-b}", "modelDefaults.networkPolicies=true",
                      "podDisruptionBudget.enabled=true", "webhook.url=https://127.0.0.1:9443",
                      "crds.keep=false", "nodeSelector.pool=system"), ("webhook.enabled=false",)]:
        docs = template(kube, *sets)
        for ns in ("team-a", "team-b"):
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        proc = kube.run("apply", "--dry-run=server", "--server-side", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": docs}), check=False)
        assert proc.returncode == 0, (sets, proc.stderr)
        assert rules_of(docs) <= REVIEWED_RULES, rules_of(docs) - REVIEWED_RULES
        if "watchNamespaces={team-a,team-b}" in sets:
            roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] in ("team-a", "team-b")]
            assert len(roles) == 2
            cluster = next(d for d in docs if d["kind"] == "ClusterRole")
            assert not any("deployments" in r["resources"] for r in cluster["rules"])


def test_values_schema_rejects_wrong_values(kube):
    for bad, field in [("replicas=two", "replicas"), ("webhook.failurePolicy=Sometimes", "failurePolicy"),
                       ("image.pullPolicy=Sometimes", "pullPolicy"), ("replicas=2,watchNamespaces={a}", "peering")]:
        proc = helm(kube, "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--set", bad, check=False)
        assert proc.returncode != 0 and field in proc.stderr, (bad, proc.stderr)


def test_webhook_configuration_matches_the_operators(kube):
    from modelplane_operator.inject import webhook_configuration

    rendered = next(d for d in template(kube) if d["kind"] == "MutatingWebhookConfiguration")
    expected = webhook_configuration({}, excluded_namespaces=("kube-system", NS))
    strip = lambda hooks: [{k: v for k, v in h.items() if k != "clientConfig"} for h in hooks]  # noqa: E731
    assert strip(rendered["webhooks"]) == strip(expected["webhooks"])


def token_kubeconfig(kube, tmp: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the chart's ServiceAccount, as the pod would have."""
    token = kube.run("create", "token", RELEASE, "-n", NS, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(kube.cluster.kubeconfig).read_text())
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "sa", "clusters": admin["clusters"],
           "users": [{"name": "sa", "user": {"token": token}}],
           "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}]}
    path = tmp / "sa-kubeconfig"
    path.write_text(json.dumps(cfg))
    return path


def test_install_run_with_chart_token_upgrade_uninstall(kube, tmp_path):
    port = free_port()
    helm(kube, "upgrade", "--install", RELEASE, str(CHART), "-n", NS, "--create-namespace",
         "--set", f"webhook.url=https://127.0.0.1:{port}", "--wait", "--timeout", "120s")
    assert kube.get("deployment", RELEASE, NS)["status"].get("readyReplicas") == 1  # kwok runs the pod
    kubeconfig = token_kubeconfig(kube, tmp_path)
    env = {**kube.env, "KUBECONFIG": str(kubeconfig), "MODELPLANE_NAMESPACE": NS,
           "MODELPLANE_WEBHOOK_PORT": str(port), "MODELPLANE_WEBHOOK_HOST": "127.0.0.1",
           "MODELPLANE_WEBHOOK_CERT_DIR": str(tmp_path / "certs"),
           "MODELPLANE_WEBHOOK_CERT_SECRET": f"{RELEASE}-webhook-cert",
           "MODELPLANE_WEBHOOK_CONFIGURATION": f"{RELEASE}.{NS}.modelplane.dev"}
    log = tmp_path / "operator.log"
    # The chart's own arguments (peering) with the chart's own credentials; only the process runs outside.
    proc = subprocess.Popen([sys.executable, "-m", "modelplane_operator", "--verbose", f"--peering={RELEASE}"],
                            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    ns = "chart-scenarios"
    try:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kube.wait_for(lambda: kube.get("secret", f"{RELEASE}-webhook-cert", NS), what="webhook certificate secret")
        hooks = kube.wait_for(lambda: (c := kube.get("mutatingwebhookconfiguration", f"{RELEASE}.{NS}.modelplane.dev"))
                              and all(h["clientConfig"].get("caBundle") for h in c["webhooks"]) and c,
                              what="caBundle patched")
        assert len(hooks["webhooks"]) == 2
        kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": "qwen", "namespace": ns},
                    "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct"}})
        kube.wait_for(lambda: ((kube.get("model", "qwen", ns) or {}).get("status") or {}).get("phase") == "Ready",
                      timeout=60, what="model ready with the chart's token")
        kube.apply({"apiVersion": "modelplane.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "bot", "namespace": ns},
                    "spec": {"image": "agent:1", "models": [{"name": "qwen"}]}})
        kube.wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in
                                  ((kube.get("agent", "bot", ns) or {}).get("status") or {}).get("conditions", [])),
                      timeout=60, what="agent ready")
        def injected():
            kube.run("delete", "pod", "probe", "-n", ns, "--ignore-not-found", "--wait=false")
            kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns,
                                                                        "labels": {"modelplane.dev/inject": "true"}},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
            p = kube.get("pod", "probe", ns)
            return p and any(e["name"] == "OPENAI_BASE_URL" for e in p["spec"]["containers"][0].get("env") or [])
        kube.wait_for(injected, timeout=60, interval=2, what="webhook with chart-generated certificate")
        assert kube.get("clusterkopfpeering", RELEASE) is not None
        text = log.read_text()
        denied = [line for line in text.splitlines() if 'HTTP/1.1" 403' in line or "Forbidden" in line]
        assert denied == [], denied[:5]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

    helm(kube, "upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values",
         "--set", "modelDefaults.vllmImage=vllm/vllm-openai:v0.32.1")
    dep = kube.get("deployment", RELEASE, NS)
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELPLANE_VLLM_IMAGE"] == "vllm/vllm-openai:v0.32.1"

    out = helm(kube, "uninstall", RELEASE, "-n", NS).stdout
    assert "kept due to the resource policy" in out
    time.sleep(2)
    assert kube.get("crd", "models.modelplane.dev") is not None
    assert kube.get("model", "qwen", ns) is not None and kube.get("deployment", "qwen", ns) is not None
