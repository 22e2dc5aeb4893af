"""One local cluster with a real node, shared by every test in this folder: pods really run there (vLLM from its
image, the operator from the Helm chart, agents), so each test here costs real container starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from folderscope import until_folder_done
from harness import Kube, temporary_namespace
from localcluster import Cluster
from localvllm import make_weights_volume

REPO = Path(__file__).resolve().parents[2]
RELEASE, OPERATOR_NS = "modelplane", "modelplane-system"


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("node-cluster"), real_node=True)
    until_folder_done(__file__).callback(cluster.down)
    cluster.up(timeout=180)
    if not cluster.node:
        pytest.skip(f"no real node here: {cluster.no_node_reason}")
    return cluster


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
    until_folder_done(__file__).callback(helm, kube, "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait")
    return RELEASE


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


def what_the_namespace_shows(kube: Kube, namespace: str) -> str:
    """For a failure message: the Deployments' and Models' status, each pod's phase, node, containers' states and
    restarts, and the namespace's last Events, so that a CI failure on the real node says why without a rerun."""
    lines = [f"deployment {d['metadata']['name']} spec.replicas={d['spec'].get('replicas')} status="
             f"{json.dumps({k: v for k, v in (d.get('status') or {}).items() if k != 'conditions'})}"
             for d in get_json(kube, "deployments", "-n", namespace).get("items", [])]
    lines += [f"model {m['metadata']['name']} status={json.dumps(m.get('status'))[:1500]}"
              for m in get_json(kube, "models", "-n", namespace).get("items", [])]
    for pod in get_json(kube, "pods", "-n", namespace).get("items", []):
        status = pod.get("status") or {}
        containers = [f"{c['name']} ready={c.get('ready')} restarts={c.get('restartCount')} "
                      f"state={json.dumps(c.get('state'))[:300]}" for c in status.get("containerStatuses") or []]
        deleting = " deleting" if pod["metadata"].get("deletionTimestamp") else ""
        lines.append(f"pod {pod['metadata']['name']} {status.get('phase')}{deleting} node={pod['spec'].get('nodeName')} "
                     f"conditions={[(c['type'], c['status'], c.get('reason')) for c in status.get('conditions') or []]}")
        lines += [f"  {c}" for c in containers]
    events = kube.run("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout.splitlines()
    return "\n".join(lines + events[-30:])


def wait_in(kube: Kube, namespace: str, fn, timeout: float, what: str, interval: float = 2, context=lambda: ""):
    """kube.wait_for, whose timeout also tells `context()` and what the namespace shows then."""
    try:
        return kube.wait_for(fn, timeout=timeout, interval=interval, what=what)
    except AssertionError as e:
        try:
            state = what_the_namespace_shows(kube, namespace)
        except Exception as unreadable:  # noqa: BLE001  never hides the failure it explains
            state = f"(namespace state unreadable: {unreadable!r})"
        raise AssertionError(f"{e} {context()}\n{state}") from None
