"""Shared by the integration and fault tests: kubectl against a local cluster, and the operator as a process."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from localcluster import Cluster, free_port


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

    def install_crds(self, *paths: str) -> None:
        """Server-side apply CRD files and wait until each is Established (kubectl wait errs while a new CRD has no
        conditions yet, so this polls)."""
        names = []
        for path in paths:
            out = self.run("apply", "--server-side", "-f", path, "-o", "json").stdout
            doc = json.loads(out)
            names += [i["metadata"]["name"] for i in doc.get("items", [doc])]

        def established():
            got = json.loads(self.run("get", "crd", *names, "-o", "json").stdout)
            crds = got.get("items", [got])  # kubectl answers one name with the object itself
            return all(any(c["type"] == "Established" and c["status"] == "True"
                           for c in (crd.get("status") or {}).get("conditions") or []) for crd in crds)
        self.wait_for(established, timeout=60, what=f"CRDs {names} established")

    def wait_for(self, fn, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = fn()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class Operator:
    """The operator as its own process, serving the injection webhook on a loopback port it configures itself."""

    def __init__(self, kube: Kube, workdir: Path, *extra_args: str, name: str = "operator", verbose: bool = True,
                 webhook: bool = True, webhook_port: int | None = None):
        """`webhook_port`: a restarted operator given its predecessor's port (and the same `workdir`, so the same
        certificates) finds its webhook configuration as it left it, as a chart install's Service does."""
        self.kube, self.log_path, self.proc, self.extra_args = kube, workdir / f"{name}.log", None, extra_args
        self.verbose, self.webhook = verbose, webhook
        self.webhook_port, self.metrics_port = webhook_port or free_port(), free_port()
        self.env = {**kube.env, "MODELPLANE_WEBHOOK_CERT_DIR": str(workdir / "webhook-certs"),
                    "MODELPLANE_METRICS_PORT": str(self.metrics_port)}

    def start(self):
        log = open(self.log_path, "ab")
        webhook_args = ["--webhook-port", str(self.webhook_port), "--webhook-host", "127.0.0.1", "--webhook-configure"]
        self.proc = subprocess.Popen([sys.executable, "-m", "modelplane_operator", *(["--verbose"] * self.verbose),
                                      *(webhook_args if self.webhook else []), *self.extra_args],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + 60
        # ready when the webhook answers (it starts last), or without one, the metrics endpoint
        port = self.webhook_port if self.webhook else self.metrics_port
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"operator exited:\n{self.log()[-3000:]}")
                time.sleep(0.3)
        raise AssertionError(f"operator not listening on {port}:\n{self.log()[-3000:]}")

    def kill(self):
        """SIGKILL: no clean-up of any kind, as when a node dies."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metric(self, name: str) -> float:
        """Sum of a metric of the operator's own /metrics over all its label sets."""
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")




@contextlib.contextmanager
def temporary_namespace(kube: Kube, prefix: str):
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.run("create", "namespace", name)
    try:
        yield name
    finally:
        kube.run("delete", "namespace", name, "--wait=false", check=False)
