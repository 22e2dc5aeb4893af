"""The chart's MutatingWebhookConfiguration, rendered by `helm template` (no cluster). Skipped only where no helm
binary is found: $MODELPLANE_HELM, then the one hack/build-binaries.sh caches, then helm on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelplane"
NAME = "kubernetes.io/metadata.name"


VERSIONS = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def helm_binary() -> str | None:
    if os.environ.get("MODELPLANE_HELM"):
        return os.environ["MODELPLANE_HELM"]
    cache = Path(os.environ.get("MODELPLANE_CACHE") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelplane")
    built = sorted(cache.glob(f"bin/*-helm-{VERSIONS.get('HELM_VERSION', '')}-*/helm"))
    return str(built[-1]) if built else shutil.which("helm")


HELM = helm_binary()
pytestmark = pytest.mark.skipif(not HELM, reason="no helm binary (hack/build-binaries.sh builds it)")


def webhook_configuration(*sets: str) -> dict:
    args = [HELM, "template", "mp", str(CHART), "-n", "modelplane-system", "--kube-version",
            VERSIONS["K8S_VERSION"].lstrip("v")]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return next(d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "MutatingWebhookConfiguration")


def namespace_expressions(config: dict) -> dict[str, list]:
    return {h["name"]: [e for e in h["namespaceSelector"]["matchExpressions"] if e["key"] == NAME]
            for h in config["webhooks"]}


def test_webhook_sees_only_the_watched_namespaces():
    """With watchNamespaces, pods of other namespaces never reach an operator that has no view of them."""
    config = webhook_configuration("watchNamespaces={team-b,team-a}")
    for hook, expressions in namespace_expressions(config).items():
        assert {"key": NAME, "operator": "In", "values": ["team-a", "team-b"]} in expressions, hook
        assert {"key": NAME, "operator": "NotIn", "values": ["kube-system", "modelplane-system"]} in expressions, hook
    namespaces_hook = next(h for h in config["webhooks"] if h["name"] == "namespaces.modelplane.dev")
    assert {"key": "modelplane.dev/inject", "operator": "In", "values": ["enabled"]} in \
        namespaces_hook["namespaceSelector"]["matchExpressions"]


def test_webhook_covers_every_namespace_but_the_excluded_by_default():
    for hook, expressions in namespace_expressions(webhook_configuration()).items():
        assert expressions == [{"key": NAME, "operator": "NotIn", "values": ["kube-system", "modelplane-system"]}], hook


@pytest.mark.parametrize("sets, kwargs", [
    ((), {}),
    (("watchNamespaces={team-b,team-a}",), {"watched_namespaces": ("team-b", "team-a")}),
    (("webhook.failurePolicy=Fail", "webhook.timeoutSeconds=10", "webhook.excludedNamespaces={kube-system,infra}"),
     {"failure_policy": "Fail", "timeout_seconds": 10, "excluded_namespaces": ("kube-system", "infra")}),
    (("webhook.excludedNamespaces={modelplane-system,kube-system}",), {}),
])
def test_webhooks_are_the_operators(sets, kwargs):
    """Field for field what inject.webhook_configuration() renders (the operator's own configuration for local
    runs), the release namespace always among the excluded."""
    from modelplane_operator.inject import webhook_configuration as operators

    excluded = (*kwargs.pop("excluded_namespaces", ("kube-system",)), "modelplane-system")
    client = {"service": {"name": "mp-webhook", "namespace": "modelplane-system", "path": "/inject", "port": 443}}
    expected = operators(client, excluded_namespaces=excluded, **kwargs)
    assert webhook_configuration(*sets)["webhooks"] == expected["webhooks"]


@pytest.mark.parametrize("url", ["https://127.0.0.1:9443", "https://127.0.0.1:9443/"])
def test_webhook_url_replaces_the_service(url):
    for hook in webhook_configuration(f"webhook.url={url}")["webhooks"]:
        assert hook["clientConfig"] == {"url": "https://127.0.0.1:9443/inject"}
