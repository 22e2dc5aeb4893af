"""One local cluster with a real node, shared by every test in this folder: pods really run there (vLLM from its
image, the operator from the Helm chart, agents), so each test here costs real container starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness import Kube, temporary_namespace
from localcluster import Cluster
from localvllm import make_weights_volume

REPO = Path(__file__).resolve().parents[2]
RELEASE, OPERATOR_NS = "modelplane", "modelplane-system"


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("node-cluster"), real_node=True)
    try:
        cluster.up(timeout=180)
    except BaseException:
        cluster.down()
        raise
    if not cluster.node:
        cluster.down()
        pytest.skip(f"no real node here: {cluster.no_node_reason}")
    yield cluster
    cluster.down()


@pytest.fixture(scope="session")
def kube(node_cluster) -> Kube:
    return Kube(node_cluster)


def helm(kube: Kube, *args: str) -> str:
    proc = subprocess.run([str(Path(kube.kubectl_bin).parent / "helm"), *args], capture_output=True, text=True,
                          env=kube.env, timeout=400)
    assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="session")
def operator(kube):
    """The operator as a user installs it: the chart (its CRDs, RBAC, webhook), the operator's own image."""
    helm(kube, "install", RELEASE, str(REPO / "charts" / "modelplane"), "--namespace", OPERATOR_NS,
         "--create-namespace", "--wait", "--timeout", "5m")
    yield RELEASE
    helm(kube, "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait")


@pytest.fixture(scope="session")
def weights_pv(kube):
    """The tiny model's weights (made locally) as a local PersistentVolume on the real node; claims bind to it by
    name (`weights` in a test's namespace) through claimRef, set per test."""
    return make_weights_volume()


def bind_weights(kube: Kube, namespace: str, folder: Path) -> None:
    """A PVC `weights` in `namespace`, bound to a local PersistentVolume holding `folder` on the real node: the
    demo's manifest (hack/demo-weights.yaml), moved to the test's namespace."""
    manifest = (REPO / "hack" / "demo-weights.yaml").read_text()
    kube.apply(manifest.replace("${WEIGHTS}", str(folder)).replace("namespace: demo", f"namespace: {namespace}")
               .replace("demo-weights", f"weights-{namespace}"))


@pytest.fixture
def namespace(kube):
    with temporary_namespace(kube, "n") as name:
        yield name


def pod_logs(kube: Kube, namespace: str, selector: str) -> str:
    return kube.run("logs", "-n", namespace, "-l", selector, "--tail=-1", check=False).stdout


def get_json(kube: Kube, *args: str) -> dict:
    return json.loads(kube.run("get", *args, "-o", "json").stdout)
