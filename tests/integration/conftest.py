"""Integration fixtures: a real local control plane (one per test session), the CRDs, and the operator running as
a separate process against it, exactly as `make demo` runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from localcluster import Cluster, free_port

REPO = Path(__file__).resolve().parents[2]


class Kube:
    """kubectl (the one built with the cluster) and a few waits."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.kubectl_bin = str(Path(cluster.state()["bin"]) / "kubectl")
        self.env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}

    def run(self, *args, input=None, check=True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.kubectl_bin, *args], input=input, capture_output=True, text=True, env=self.env,
                              timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def apply(self, manifest: dict | str, check=True) -> subprocess.CompletedProcess:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.run("apply", "-f", "-", input=text, check=check)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        proc = self.run(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        return json.loads(proc.stdout)

    def wait_for(self, fn, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = fn()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    c.up()
    yield c
    c.down()


@pytest.fixture(scope="session")
def kube(cluster) -> Kube:
    k = Kube(cluster)
    k.run("apply", "--server-side", "-f", str(REPO / "crds"))
    k.run("wait", "--for=condition=Established", "crd/models.modelplane.dev", "crd/agents.modelplane.dev",
          "--timeout=60s")
    return k


class Operator:
    """The operator as its own process, serving the injection webhook on a loopback port it configures itself."""

    def __init__(self, kube: Kube, workdir: Path):
        self.kube, self.log_path, self.proc = kube, workdir / "operator.log", None
        self.webhook_port, self.metrics_port = free_port(), free_port()
        self.env = {**kube.env, "MODELPLANE_WEBHOOK_CERT_DIR": str(workdir / "webhook-certs"),
                    "MODELPLANE_METRICS_PORT": str(self.metrics_port)}

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "modelplane_operator", "--verbose",
                                      "--webhook-port", str(self.webhook_port), "--webhook-host", "127.0.0.1",
                                      "--webhook-configure"],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:  # ready when the webhook answers (it starts last)
            try:
                socket.create_connection(("127.0.0.1", self.webhook_port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"operator exited:\n{self.log()[-3000:]}")
                time.sleep(0.3)
        raise AssertionError(f"operator webhook not listening:\n{self.log()[-3000:]}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def operator(kube, tmp_path_factory):
    op = Operator(kube, tmp_path_factory.mktemp("operator")).start()
    yield op
    op.stop()
    assert "Traceback" not in op.log(), op.log()[-5000:]


@pytest.fixture
def namespace(kube):
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.run("create", "namespace", name)
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)
