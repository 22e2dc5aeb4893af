"""The chart without a cluster: values.yaml and values.schema.json agree (every value commented, every property
described by that comment), _helpers.tpl holds only commented, used helpers, and `helm template` renders the fail
guards, the operator's env wiring and RBAC rules within the reviewed list. The helm binary is found as in
test_chart_webhook.py; the tests that need it are skipped only where there is none."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess

import pytest
import yaml

from modelplane_operator.config import Config
from test_chart_webhook import CHART, HELM, REPO, VERSIONS

RELEASE, NS = "mp", "modelplane-system"
needs_helm = pytest.mark.skipif(not HELM, reason="no helm binary (hack/build-binaries.sh builds it)")

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def value_comments(text: str) -> dict[tuple[str, ...], str]:
    """Each key of a values file (as its path) with the comment lines written directly above it, joined by spaces
    ("" where there are none). A blank line ends a comment, so a file or section header describes no key."""
    comments: dict[tuple[str, ...], str] = {}
    parents: list[tuple[int, str]] = []
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        key = re.match(r"( *)([A-Za-z0-9_.-]+):(\s|$)", line)
        if key:
            indent = len(key.group(1))
            while parents and parents[-1][0] >= indent:
                parents.pop()
            parents.append((indent, key.group(2)))
            comments[tuple(k for _, k in parents)] = " ".join(block)
        block = []
    return comments


def schema_properties(node: dict, path: tuple[str, ...] = ()):
    """(path, schema) of every declared property, those of array items included (their path has "[]")."""
    for name, prop in node.get("properties", {}).items():
        yield path + (name,), prop
        yield from schema_properties(prop, path + (name,))
    if isinstance(node.get("items"), dict):
        yield from schema_properties(node["items"], path + ("[]",))


def values_paths(values: dict, schema: dict, path: tuple[str, ...] = ()):
    """The path of every key of values.yaml that the schema describes property by property (the content of free-form
    objects such as resources or affinity is passed through as it is, and not described key by key)."""
    for name, value in values.items():
        yield path + (name,)
        declared = schema.get("properties", {}).get(name, {})
        if isinstance(value, dict) and "properties" in declared:
            yield from values_paths(value, declared, path + (name,))


# values.yaml and values.schema.json


def test_values_and_schema_declare_the_same_properties():
    in_values = set(values_paths(VALUES, SCHEMA))
    in_schema = {path for path, _ in schema_properties(SCHEMA) if "[]" not in path}
    assert in_values - in_schema == set(), "values.yaml keys missing from values.schema.json"
    assert in_schema - in_values == set(), "values.schema.json properties without a default in values.yaml"


def test_every_value_is_commented():
    comments = value_comments(VALUES_TEXT)
    uncommented = [".".join(p) for p in values_paths(VALUES, SCHEMA) if not comments.get(p)]
    assert uncommented == [], "values.yaml keys without a comment directly above them"


def test_every_schema_property_has_a_description():
    undescribed = [".".join(p) for p, prop in schema_properties(SCHEMA) if not str(prop.get("description", "")).strip()]
    assert undescribed == [], "values.schema.json properties without a description"


def test_schema_descriptions_are_the_values_comments():
    """One text per value: the comment a reader of values.yaml sees is what the schema (and tools reading it) say."""
    comments = value_comments(VALUES_TEXT)
    described = dict(schema_properties(SCHEMA))
    differ = {".".join(p): (comments.get(p), described[p].get("description")) for p in values_paths(VALUES, SCHEMA)
              if comments.get(p) != described[p].get("description")}
    assert differ == {}, "path: (values.yaml comment, schema description)"


def test_the_comment_parser_reads_nested_keys_and_skips_headers():
    text = "# header\n\n# a's\n# comment\na:\n  # b's\n  b: 1\n  c: {d: 2}\n# e's\ne: []\n"
    assert value_comments(text) == {("a",): "a's comment", ("a", "b"): "b's", ("a", "c"): "", ("e",): "e's"}


# _helpers.tpl


def test_every_helper_is_commented_and_used():
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    templates = "\n".join(p.read_text() for p in (CHART / "templates").iterdir() if p.is_file())
    names = re.findall(r'define "([^"]+)"', helpers)
    assert names, "no helpers found"
    for name in names:
        before = helpers[:helpers.index(f'define "{name}"')].rstrip().removesuffix("{{-").removesuffix("{{").rstrip()
        assert before.endswith(("*/}}", "*/ -}}", "*/ }}", "*/-}}")), f"{name}: no comment right above its define"
        assert re.search(rf'(include|template) "{re.escape(name)}"', templates), f"{name}: included nowhere"


# helm template


KUBE_VERSION = VERSIONS["K8S_VERSION"].lstrip("v")


def render(*sets: str, check: bool = True) -> subprocess.CompletedProcess | list[dict]:
    args = [HELM, "template", RELEASE, str(CHART), "-n", NS, "--kube-version", KUBE_VERSION]
    for s in sets:  # "json:key=[...]" sets a structured value
        args += ["--set-json", s[5:]] if s.startswith("json:") else ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if not check:
        return out
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def operator_container(docs: list[dict]) -> dict:
    return find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def operator_env(docs: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in operator_container(docs)["env"] if "valueFrom" not in e}


@needs_helm
def test_lint():
    out = subprocess.run([HELM, "lint", str(CHART), "--kube-version", KUBE_VERSION], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "0 chart(s) failed" in out.stdout, out.stdout + out.stderr


@needs_helm
@pytest.mark.parametrize("sets, says", [
    (("replicas=2", "watchNamespaces={a}"), "replicas > 1 needs cluster-wide peering"),
    (("replicas=two",), "replicas"),
    (("webhook.failurePolicy=Sometimes",), "failurePolicy"),
    (("image.pullPolicy=Sometimes",), "pullPolicy"),
    (("webhook.url=http://x:9443",), "url"),
    (("watchNamespaces={Team_A}",), "watchNamespaces"),
    (("modelDefaults.upgradeRolloutsAtOnce=-1",), "upgradeRolloutsAtOnce"),
    (("unknownValue=1",), "unknownValue"),
])
def test_wrong_values_are_refused_naming_them(sets, says):
    out = render(*sets, check=False)
    assert out.returncode != 0 and says in out.stderr, out.stderr


@needs_helm
@pytest.mark.parametrize("sets", [("replicas=2",), ("watchNamespaces={a,b}",), ("replicas=1", "watchNamespaces={a}"),
                                  ("replicas=0", "watchNamespaces={a}")])
def test_one_replica_or_cluster_wide_peering_renders(sets):
    assert find(render(*sets), "Deployment")


@needs_helm
def test_default_env_and_args():
    docs = render()
    env, container = operator_env(docs), operator_container(docs)
    assert env == {
        "MODELPLANE_READINESS_PORT": "8082",
        "MODELPLANE_VLLM_IMAGE": VALUES["modelDefaults"]["vllmImage"],
        "MODELPLANE_VLLM_CPU_IMAGE": VALUES["modelDefaults"]["vllmCpuImage"],
        "MODELPLANE_ROUTER_IMAGE": VALUES["modelDefaults"]["routerImage"],
        # the adapter loader runs the operator's own image, and the operator's default is that image
        "MODELPLANE_ADAPTER_LOADER_IMAGE": container["image"],
        "MODELPLANE_GPU_RESOURCE": "nvidia.com/gpu",
        "MODELPLANE_GPU_PRODUCT_LABEL": "nvidia.com/gpu.product",
        "MODELPLANE_CLUSTER_DOMAIN": "cluster.local",
        "MODELPLANE_UPGRADE_ROLLOUTS_AT_ONCE": "1",
        "MODELPLANE_METRICS_PORT": "8081",
        "MODELPLANE_WEBHOOK_PORT": "9443",
        "MODELPLANE_WEBHOOK_HOST": f"{RELEASE}-webhook.{NS}.svc",
        "MODELPLANE_WEBHOOK_CERT_DIR": "/var/run/modelplane/webhook-certs",
        "MODELPLANE_WEBHOOK_CERT_SECRET": f"{RELEASE}-webhook-cert",
        "MODELPLANE_WEBHOOK_CONFIGURATION": f"{RELEASE}.{NS}.modelplane.dev",
    }
    namespace = next(e for e in container["env"] if e["name"] == "MODELPLANE_NAMESPACE")
    assert namespace["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz", f"--peering={RELEASE}"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == \
        {"liveness": 8080, "readiness": 8082, "metrics": 8081, "webhook": 9443}
    assert container["image"] == f"{VALUES['image']['repository']}:" + \
        yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert container["image"] == Config().adapter_loader_image


@needs_helm
@pytest.mark.parametrize("value, var, rendered", [
    ("readiness.port=9100", "MODELPLANE_READINESS_PORT", "9100"),
    ("modelDefaults.vllmImage=registry.local/vllm:1", "MODELPLANE_VLLM_IMAGE", "registry.local/vllm:1"),
    ("modelDefaults.vllmCpuImage=registry.local/vllm-cpu:1", "MODELPLANE_VLLM_CPU_IMAGE", "registry.local/vllm-cpu:1"),
    ("modelDefaults.gpuResource=amd.com/gpu", "MODELPLANE_GPU_RESOURCE", "amd.com/gpu"),
    ("modelDefaults.gpuProductLabel=example.com/gpu", "MODELPLANE_GPU_PRODUCT_LABEL", "example.com/gpu"),
    ("modelDefaults.clusterDomain=corp.local", "MODELPLANE_CLUSTER_DOMAIN", "corp.local"),
    ("modelDefaults.upgradeRolloutsAtOnce=0", "MODELPLANE_UPGRADE_ROLLOUTS_AT_ONCE", "0"),
    ("modelDefaults.networkPolicies=true", "MODELPLANE_NETWORK_POLICIES", "true"),
    ("metrics.port=9101", "MODELPLANE_METRICS_PORT", "9101"),
    ("webhook.port=10443", "MODELPLANE_WEBHOOK_PORT", "10443"),
    ("webhook.certManager.enabled=true", "MODELPLANE_WEBHOOK_CERT_SOURCE", "files"),
])
def test_each_value_reaches_its_env_var(value, var, rendered):
    assert operator_env(render(value))[var] == rendered


@needs_helm
@pytest.mark.parametrize("sets, absent", [
    ((), {"MODELPLANE_NETWORK_POLICIES", "MODELPLANE_WEBHOOK_CERT_SOURCE"}),
    (("metrics.enabled=false",), {"MODELPLANE_METRICS_PORT"}),
    (("webhook.enabled=false",), {"MODELPLANE_WEBHOOK_PORT", "MODELPLANE_WEBHOOK_HOST", "MODELPLANE_WEBHOOK_CERT_DIR",
                                  "MODELPLANE_WEBHOOK_CERT_SECRET", "MODELPLANE_WEBHOOK_CONFIGURATION"}),
    (("webhook.certManager.enabled=true",), {"MODELPLANE_WEBHOOK_CERT_SECRET", "MODELPLANE_WEBHOOK_CONFIGURATION"}),
])
def test_env_vars_of_what_is_off_are_not_set(sets, absent):
    assert absent.isdisjoint(operator_env(render(*sets)))


@needs_helm
@pytest.mark.parametrize("sets", [(), ("modelDefaults.networkPolicies=true", "webhook.certManager.enabled=true"),
                                  ("webhook.enabled=false", "metrics.enabled=false")])
def test_the_operator_reads_every_env_var_the_chart_sets(sets):
    """Each MODELPLANE_* variable names a Config field and holds a value that field takes."""
    env = operator_env(render(*sets))
    known = {f"MODELPLANE_{f.name.upper()}" for f in dataclasses.fields(Config)}
    assert set(env) - known == set()
    config = Config.from_env(env)
    assert config.readiness_port == 8082 and config.cluster_domain == "cluster.local"
    assert config.network_policies == ("modelDefaults.networkPolicies=true" in sets)


@needs_helm
def test_watch_namespaces_become_arguments_and_liveness_its_port():
    container = operator_container(render("watchNamespaces={team-a,team-b}", "liveness.port=9180"))
    assert container["args"] == ["--liveness=http://0.0.0.0:9180/healthz", "--namespace=team-a", "--namespace=team-b"]
    assert {"name": "liveness", "containerPort": 9180} in container["ports"]


@needs_helm
def test_certificates_come_from_the_operator_or_cert_manager():
    spec = find(render(), "Deployment")["spec"]["template"]["spec"]
    assert {"name": "webhook-certs", "emptyDir": {"sizeLimit": "1Mi"}} in spec["volumes"]
    docs = render("webhook.certManager.enabled=true")
    spec = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "webhook-certs", "secret": {"secretName": f"{RELEASE}-webhook-cert"}} in spec["volumes"]
    certificate = find(docs, "Certificate")
    assert certificate["spec"]["issuerRef"] == {"name": f"{RELEASE}-selfsigned", "kind": "Issuer"}
    assert certificate["spec"]["dnsNames"] == [f"{RELEASE}-webhook.{NS}.svc"]
    assert find(docs, "Issuer")["metadata"]["name"] == f"{RELEASE}-selfsigned"
    assert find(docs, "MutatingWebhookConfiguration")["metadata"]["annotations"] == \
        {"cert-manager.io/inject-ca-from": f"{NS}/{certificate['metadata']['name']}"}
    docs = render("webhook.certManager.enabled=true", "webhook.certManager.issuerRef.name=corp",
                  "webhook.certManager.issuerRef.kind=ClusterIssuer")
    assert find(docs, "Certificate")["spec"]["issuerRef"] == {"name": "corp", "kind": "ClusterIssuer"}
    assert not [d for d in docs if d["kind"] == "Issuer"]


# RBAC


def reviewed_rules() -> set[tuple[str, str, str]]:
    """REVIEWED_RULES of tests/integration/test_chart.py, read from its source: importing that module would import
    the integration harness (and its local control plane helpers), so the literal is evaluated on its own."""
    tree = ast.parse((REPO / "tests" / "integration" / "test_chart.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and
                any(isinstance(t, ast.Name) and t.id == "REVIEWED_RULES" for t in n.targets))
    return ast.literal_eval(node.value)


def rules_of(docs: list[dict], kinds=("ClusterRole", "Role")) -> set[tuple[str, str, str]]:
    return {(group, resource, ",".join(sorted(rule["verbs"])))
            for d in docs if d["kind"] in kinds for rule in d["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"]}


RBAC_VARIATIONS = [(), ("watchNamespaces={team-a,team-b}",), ("modelDefaults.networkPolicies=true",),
                   ("watchNamespaces={team-a}", "modelDefaults.networkPolicies=true"), ("webhook.enabled=false",),
                   ("webhook.certManager.enabled=true",), ("webhook.url=https://127.0.0.1:9443",)]


@needs_helm
@pytest.mark.parametrize("sets", RBAC_VARIATIONS)
def test_rbac_rules_are_reviewed(sets):
    docs = render(*sets)
    assert rules_of(docs) <= reviewed_rules(), rules_of(docs) - reviewed_rules()


@needs_helm
def test_watch_namespaces_turn_workload_rules_into_roles():
    everywhere, listed = render(), render("watchNamespaces={team-a,team-b}")
    workload = rules_of([find(everywhere, "ClusterRole")]) - rules_of([find(listed, "ClusterRole")])
    assert ("apps", "deployments", "create,delete,get,list,patch,watch") in workload
    for ns in ("team-a", "team-b"):
        role = next(d for d in listed if d["kind"] == "Role" and d["metadata"]["namespace"] == ns)
        assert rules_of([role]) == workload
        binding = next(d for d in listed if d["kind"] == "RoleBinding" and d["metadata"]["namespace"] == ns)
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}]


@needs_helm
def test_network_policies_are_written_only_when_enabled_and_deleted_when_not():
    writing = ("networking.k8s.io", "networkpolicies", "create,delete,get,list,patch,watch")
    deleting = ("networking.k8s.io", "networkpolicies", "delete,get,list,watch")
    assert deleting in rules_of(render()) and writing not in rules_of(render())
    assert writing in rules_of(render("modelDefaults.networkPolicies=true"))
    assert writing in rules_of(render("modelDefaults.networkPolicies=true", "watchNamespaces={team-a}"), ("Role",))


@needs_helm
def test_network_policy_peers_reach_the_operator_as_json():
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
             {"ipBlock": {"cidr": "10.8.0.0/16"}}]
    env = operator_env(render("modelDefaults.networkPolicies=true",
                              f"json:modelDefaults.networkPolicyAllowFrom={json.dumps(peers)}"))
    assert Config.from_env(env).network_policy_allow_from == tuple(peers)
    assert "MODELPLANE_NETWORK_POLICY_ALLOW_FROM" not in operator_env(render("modelDefaults.networkPolicies=true"))


@needs_helm
def test_the_operator_peer_selects_the_operators_own_pods():
    """What an autoscaled Model's policies admit for the autoscaler's scrapes is exactly the operator's pods."""
    manifests = render("modelDefaults.networkPolicies=true")
    peer = Config.from_env(operator_env(manifests)).operator_peer
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert len(peer) == 1 and set(peer[0]) == {"namespaceSelector", "podSelector"}, peer
    assert peer[0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NS}}
    assert peer[0]["podSelector"]["matchLabels"].items() <= pod_labels.items(), (peer, pod_labels)
    assert "MODELPLANE_OPERATOR_PEER" not in operator_env(render())


@needs_helm
@pytest.mark.parametrize("peer", [{}, {"podSelector": {"matchLabels": {"a": 1}}}, {"ports": [8000]},
                                  {"ipBlock": {"except": ["10.0.0.0/8"]}}])
def test_values_schema_refuses_what_is_not_a_network_policy_peer(peer):
    out = render("modelDefaults.networkPolicies=true",
                 f"json:modelDefaults.networkPolicyAllowFrom={json.dumps([peer])}", check=False)
    assert out.returncode != 0 and "networkPolicyAllowFrom" in out.stderr


@needs_helm
def test_named_resources_are_the_ones_the_chart_makes():
    docs = render()
    env = operator_env(docs)
    cluster_role = find(docs, "ClusterRole")
    hook = next(r for r in cluster_role["rules"] if "mutatingwebhookconfigurations" in r["resources"])
    assert hook["resourceNames"] == [find(docs, "MutatingWebhookConfiguration")["metadata"]["name"]] == \
        [env["MODELPLANE_WEBHOOK_CONFIGURATION"]]
    cert_role = find(docs, "Role", f"{RELEASE}-webhook-cert")
    assert [r["resourceNames"] for r in cert_role["rules"] if "resourceNames" in r] == \
        [[env["MODELPLANE_WEBHOOK_CERT_SECRET"]]]


@needs_helm
@pytest.mark.parametrize("sets, kinds", [(("webhook.enabled=false",), {"mutatingwebhookconfigurations", "secrets"}),
                                         (("webhook.certManager.enabled=true",), {"secrets"})])
def test_no_webhook_rules_where_the_operator_does_not_need_them(sets, kinds):
    assert kinds.isdisjoint(resource for _, resource, _ in rules_of(render(*sets)))
