"""A real Kubernetes control plane as local processes, with kwok for simulated GPU and CPU nodes and, where it can
run (root, Linux, cgroups), one real CPU node where pods run (hack/realnode.py).

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok are built from their Go modules by
hack/build-binaries.sh (cached by version) and started here on free loopback ports, with certificates generated for
this cluster alone. The control plane never leaves 127.0.0.1; the real node has a network namespace of its own.

    python hack/localcluster.py up [--dir DIR] [--no-real-node]   start (or reuse) a cluster, print its kubeconfig
    python hack/localcluster.py down [--dir DIR]   stop it
    python hack/localcluster.py env [--dir DIR]    print `export KUBECONFIG=...`
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from modelplane_operator.certs import cert_pem, issue, key_pem, new_key

import images as image_builder
import realnode
from procs import alive, kill

HACK = Path(__file__).resolve().parent
REPO = HACK.parent
DEFAULT_DIR = REPO / ".cluster"
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_CIDR = "10.244.0.0/16"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"

# Simulated nodes: two GPU nodes (tainted so only GPU workloads land there) and one CPU node.
NODES = [
    {"name": "kwok-gpu-0", "gpus": 8, "cpu": "96", "memory": "1Ti"},
    {"name": "kwok-gpu-1", "gpus": 8, "cpu": "96", "memory": "1Ti"},
    {"name": "kwok-cpu-0", "gpus": 0, "cpu": "16", "memory": "64Gi"},
]
# With a real node, CPU pods land on it: kwok's CPU node is left out.
REAL_NODE_KWOK_NODES = [n for n in NODES if n["gpus"]]
# For scale and fault tests: room for a thousand small pods.
# Room for the benchmark's 1000+ CPU Models: each requests 5Gi of ephemeral-storage for its weights cache.
BIG_NODE = {"name": "kwok-cpu-big", "gpus": 0, "cpu": "2000", "memory": "16Ti", "pods": "2000", "storage": "16Ti"}


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


def build_binaries() -> Path:
    """Build or reuse the cached binaries; the build script prints its progress and, last, the folder."""
    out = subprocess.run(
        ["bash", str(HACK / "build-binaries.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- certificates -------------------------------------------------------------------------------------------

def make_pki(pki: Path) -> None:
    if (pki / "admin.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = new_key()
    ca = issue("modelplane-local-ca", ca_key, ca=True)
    files = {"ca.key": key_pem(ca_key), "ca.crt": cert_pem(ca)}
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
    sans = ["127.0.0.1", service_ip, realnode.NODE_IP, "localhost", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    key = new_key()
    files.update({"apiserver.key": key_pem(key),
                  "apiserver.crt": cert_pem(issue("kube-apiserver", key, (ca, ca_key), sans=sans, server=True))})
    key = new_key()
    files.update({"apiserver-kubelet-client.key": key_pem(key), "apiserver-kubelet-client.crt": cert_pem(
        issue("kube-apiserver-kubelet-client", key, (ca, ca_key), org="system:masters"))})
    key = new_key()
    files.update({"admin.key": key_pem(key),
                  "admin.crt": cert_pem(issue("modelplane-admin", key, (ca, ca_key), org="system:masters"))})
    sa = new_key()
    files.update({"sa.key": key_pem(sa), "sa.pub": sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)})
    for name, data in files.items():
        (pki / name).write_bytes(data)
        if name.endswith(".key"):
            (pki / name).chmod(0o600)


def write_kubeconfig(path: Path, pki: Path, port: int, user: str = "admin",
                     server: str | None = None) -> None:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "modelplane-local",
        "clusters": [{"name": "modelplane-local", "cluster": {
            "server": server or f"https://127.0.0.1:{port}", "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "admin", "user": {
            "client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")}}],
        "contexts": [{"name": "modelplane-local", "context": {"cluster": "modelplane-local", "user": "admin"}}],
    }
    path.write_text(json.dumps(cfg, indent=2))  # JSON is valid kubeconfig YAML
    path.chmod(0o600)


def client_kubeconfig(pki: Path, name: str, user: str, org: str | None, server: str) -> Path:
    """A kubeconfig for one of the node's components, with a client certificate for `user` in group `org`."""
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = new_key()
    (pki / f"{name}.key").write_bytes(key_pem(key))
    (pki / f"{name}.key").chmod(0o600)
    (pki / f"{name}.crt").write_bytes(cert_pem(issue(user, key, (ca, ca_key), org=org)))
    path = pki.parent / f"{name}.kubeconfig"
    write_kubeconfig(path, pki, 0, user=name, server=server)
    return path


# --- processes ----------------------------------------------------------------------------------------------


def grace_of(component: str) -> float:
    """Seconds between SIGTERM and SIGKILL. kube-apiserver drains for more than 10 s on SIGTERM, and every component
    but etcd keeps its state in etcd, so they lose nothing by a short grace; etcd gets its full 10 s."""
    return 10 if component == "etcd" else 2


class Cluster:
    """One local cluster living in `root`: its PKI, data, logs, kubeconfig and the pids of its processes."""

    def __init__(self, root: Path = DEFAULT_DIR, nodes: list[dict] | None = None, audit: bool = False,
                 real_node: bool = False, images: bool = True):
        self.root = Path(root).resolve()
        self.nodes = nodes or (REAL_NODE_KWOK_NODES if real_node else NODES)
        self.want_real_node, self.want_images = real_node, images
        self.node: realnode.RealNode | None = None  # set by up() when the real node runs
        self.no_node_reason: str | None = None
        # An audit log (metadata only) says who sent which request: the benchmarks count the operator's own.
        self.audit_log = self.root / "logs" / "audit.jsonl" if audit else None
        self.pki = self.root / "pki"
        self.logs = self.root / "logs"
        self.kubeconfig = self.root / "kubeconfig"
        self.state_file = self.root / "state.json"

    # state ---------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self, state: dict) -> None:
        self.state_file.write_text(json.dumps(state, indent=2))

    def _node_of(self, st: dict) -> realnode.RealNode | None:
        """The real node a saved state names, if any."""
        if not st.get("real_node"):
            return None
        return realnode.RealNode(Path(st["real_node"]), Path(st["bin"]), self.pki, st["ports"]["apiserver"])

    def running(self) -> bool:
        st = self.state()
        node = self._node_of(st)
        return (bool(st.get("pids")) and all(alive(p) for p in st["pids"].values())
                and (node is None or node.alive()))

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state()['ports']['apiserver']}"

    # lifecycle -----------------------------------------------------------------------------------------------
    def up(self, bin_dir: Path | None = None, timeout: float = 120) -> "Cluster":
        if self.running() and self._healthy():
            log(f"reusing the running cluster in {self.root}")
            self.node = self._node_of(self.state())
            return self
        self.down(quiet=True)
        bin_dir = Path(bin_dir) if bin_dir else build_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        make_pki(self.pki)
        link = self.root / "bin"  # so that `export PATH=<dir>/bin:$PATH` gives this cluster's kubectl and helm
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(bin_dir)
        ports = {k: free_port() for k in ("etcd", "etcd_peer", "apiserver", "kcm", "scheduler", "kwok")}
        write_kubeconfig(self.kubeconfig, self.pki, ports["apiserver"])
        state = {"ports": ports, "pids": {}, "bin": str(bin_dir), "real_node": None}
        self._save(state)
        node_flags = self._prepare_real_node(bin_dir, ports["apiserver"])
        if self.node:
            state["real_node"] = str(self.node.root)
            self._save(state)
        p = self.pki
        kube_common = [f"--kubeconfig={self.kubeconfig}", f"--authentication-kubeconfig={self.kubeconfig}",
                       f"--authorization-kubeconfig={self.kubeconfig}", "--leader-elect=false",
                       "--bind-address=127.0.0.1"]
        commands = {
            "etcd": [f"{bin_dir}/etcd", "--name=modelplane", f"--data-dir={self.root / 'etcd'}",
                     f"--listen-client-urls=http://127.0.0.1:{ports['etcd']}",
                     f"--advertise-client-urls=http://127.0.0.1:{ports['etcd']}",
                     f"--listen-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
                     f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd_peer']}",
                     f"--initial-cluster=modelplane=http://127.0.0.1:{ports['etcd_peer']}",
                     "--unsafe-no-fsync", "--quota-backend-bytes=4294967296", "--log-level=warn"],
            "kube-apiserver": [
                f"{bin_dir}/kube-apiserver", f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                "--bind-address=127.0.0.1", f"--secure-port={ports['apiserver']}",
                f"--cert-dir={self.root / 'apiserver-certs'}", f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}", f"--client-ca-file={p / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
                "--allow-privileged=true", "--profiling=false", *self._audit_flags(),
                # As OpenShift has it: setting blockOwnerDeletion needs `update` on the owner's finalizers, so a
                # chart that forgets that grant fails here too.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
                # With a real node, pods reach the API server through the `kubernetes` Service: its endpoint is the
                # node-side end of hack/nodeproxy.py. Without one, there is no endpoint to publish.
                *([f"--advertise-address={realnode.NODE_IP}", "--endpoint-reconciler-type=lease", *node_flags]
                  if self.node else ["--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"])],
            "kube-controller-manager": [
                f"{bin_dir}/kube-controller-manager", *kube_common, f"--secure-port={ports['kcm']}",
                f"--root-ca-file={p / 'ca.crt'}", f"--service-account-private-key-file={p / 'sa.key'}",
                "--use-service-account-credentials=false", "--allocate-node-cidrs=true",
                f"--cluster-cidr={CLUSTER_CIDR}", f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10", "--kube-api-qps=200", "--kube-api-burst=400"],
            "kube-scheduler": [f"{bin_dir}/kube-scheduler", *kube_common, f"--secure-port={ports['scheduler']}",
                               "--kube-api-qps=200", "--kube-api-burst=400"],
            "kwok": [f"{bin_dir}/kwok", f"--kubeconfig={self.kubeconfig}",
                     "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                     "--cidr=10.244.0.0/16", "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
                     f"--server-address=127.0.0.1:{ports['kwok']}",
                     # kwok's own stages (from its module) and modelplane's (a simulated crash loop)
                     *[f"--config={f}" for d in (bin_dir / "kwok-stages", HACK / "kwok-stages")
                       for f in sorted(d.glob("*.yaml"))]],
        }
        deadline = time.monotonic() + timeout
        state["commands"] = commands
        for name, cmd in commands.items():
            log(f"starting {name}")
            state["pids"][name] = self._spawn(name, cmd)
            self._save(state)
            if name == "etcd":
                self._wait(lambda: _http_ok(f"http://127.0.0.1:{ports['etcd']}/health"), deadline, name)
            if name == "kube-apiserver":
                self._wait(self._healthy, deadline, name)
        self._wait(self._default_service_account_ready, deadline, "service-account controller")
        self.apply_nodes()
        self._wait(self._nodes_ready, deadline, "kwok nodes")
        if self.node:
            self._start_real_node(bin_dir)
        log(f"cluster ready: {self.server}")
        log(f"kubeconfig: {self.kubeconfig}")
        return self

    # the real node --------------------------------------------------------------------------------------------
    def _prepare_real_node(self, bin_dir: Path, api_port: int) -> list[str]:
        """The real node's namespace and relay, before the API server (which takes flags from them)."""
        if not self.want_real_node:
            return []
        reason = realnode.unavailable_reason(bin_dir)
        if reason:
            self.no_node_reason = reason
            log(f"no real node ({reason}): kwok nodes only; tests that need one are skipped")
            self.nodes = NODES
            return []
        self.node = realnode.RealNode(self.root / "node", bin_dir, self.pki, api_port)
        return self.node.prepare()

    def _start_real_node(self, bin_dir: Path) -> None:
        t0 = time.monotonic()
        images = None
        if self.want_images:
            only = os.environ.get("MODELPLANE_IMAGES")  # e.g. "pause,coredns,agent" while developing
            images = image_builder.build_images(bin_dir, only.split(",") if only else None)
        self.node.start(lambda user, org, server: client_kubeconfig(
            self.pki, user.replace(":", "-"), user, org, server), images)
        cidr = self.node_pod_cidr(timeout=120)
        self.node.write_cni_config(cidr)
        self._wait(lambda: self._node_ready(realnode.NODE_NAME), time.monotonic() + 120, "the real node")
        self.install_dns()
        log(f"real node {realnode.NODE_NAME} ready in {time.monotonic() - t0:.0f}s (pods on {cidr})")

    def node_pod_cidr(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                cidr = self.request("GET", f"/api/v1/nodes/{realnode.NODE_NAME}").get("spec", {}).get("podCIDR")
                if cidr:
                    return cidr
            except urllib.error.HTTPError:
                pass
            if not self.node.alive():
                raise RuntimeError(f"the real node stopped; logs in {self.node.logs}")
            time.sleep(0.5)
        raise TimeoutError(f"the real node did not register in {timeout}s; logs in {self.node.logs}")

    def install_dns(self) -> None:
        """CoreDNS as the cluster DNS, so <service>.<namespace>.svc.cluster.local resolves."""
        manifest = (HACK / "coredns.yaml").read_text().replace("${IMAGE}", image_builder.coredns_image()) \
            .replace("${DNS_IP}", realnode.DNS_IP)
        kubectl = Path(self.state()["bin"]) / "kubectl"
        subprocess.run([str(kubectl), "--kubeconfig", str(self.kubeconfig), "apply", "-f", "-"], input=manifest,
                       text=True, check=True, capture_output=True)
        subprocess.run([str(kubectl), "--kubeconfig", str(self.kubeconfig), "-n", "kube-system", "rollout", "status",
                        "deployment/coredns", "--timeout=120s"], check=True, capture_output=True)

    def _node_ready(self, name: str) -> bool:
        return _ready(self.request("GET", f"/api/v1/nodes/{name}"))

    def _audit_flags(self) -> list[str]:
        if not self.audit_log:
            return []
        policy = self.root / "audit-policy.yaml"  # MODELPLANE_AUDIT_LEVEL=Request logs bodies too, for debugging
        policy.write_text(json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                      "omitStages": ["RequestReceived", "ResponseStarted"],
                                      "rules": [{"level": os.environ.get("MODELPLANE_AUDIT_LEVEL", "Metadata")}]}))
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}", "--audit-log-format=json"]

    def _spawn(self, name: str, cmd: list[str]) -> int:
        out = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        return proc.pid

    def stop(self, name: str) -> None:
        """Stop one component (used by fault tests); `start` brings it back with the same flags."""
        st = self.state()
        pid = st["pids"].get(name)
        if pid and alive(pid):
            kill(pid, grace_of(name))

    def start(self, name: str, timeout: float = 60) -> None:
        st = self.state()
        st["pids"][name] = self._spawn(name, st["commands"][name])
        self._save(st)
        if name == "kube-apiserver":
            self._wait(self._healthy, time.monotonic() + timeout, name)

    def down(self, quiet: bool = False) -> None:
        st = self.state()
        node = self._node_of(st)
        if node:
            if not quiet:
                log("stopping the real node (its pods, kubelet, kube-proxy, containerd)")
            node.down()
        for name, pid in reversed(list(st.get("pids", {}).items())):
            if alive(pid):
                if not quiet:
                    log(f"stopping {name}")
                kill(pid, grace_of(name))
        if st:
            st["pids"] = {}
            self._save(st)

    # readiness -----------------------------------------------------------------------------------------------
    def _wait(self, check, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception:  # not up yet
                pass
            dead = [n for n, p in self.state()["pids"].items() if not alive(p)]
            if dead:
                raise RuntimeError(f"{dead[0]} exited; see {self.logs / (dead[0] + '.log')}")
            time.sleep(0.3)
        raise TimeoutError(f"{what} not ready in time; logs in {self.logs}")

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def request(self, method: str, path: str, body: dict | None = None,
                content_type: str = "application/json") -> dict:
        req = urllib.request.Request(self.server + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, context=self._ssl(), timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def _healthy(self) -> bool:
        req = urllib.request.Request(self.server + "/readyz")
        with urllib.request.urlopen(req, context=self._ssl(), timeout=2) as resp:
            return resp.status == 200

    def _default_service_account_ready(self) -> bool:
        self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return True

    def _nodes_ready(self) -> bool:
        items = self.request("GET", "/api/v1/nodes")["items"]
        ready = {n["metadata"]["name"] for n in items if _ready(n)}
        return all(n["name"] in ready for n in self.nodes)

    # nodes ---------------------------------------------------------------------------------------------------
    def apply_nodes(self) -> None:
        for spec in self.nodes:
            node = node_manifest(**spec)
            self.request("PATCH", f"/api/v1/nodes/{spec['name']}?fieldManager=localcluster&force=true", node,
                         content_type="application/apply-patch+yaml")
            status = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": spec["name"]},
                      "status": node["status"]}
            self.request("PATCH", f"/api/v1/nodes/{spec['name']}/status?fieldManager=localcluster&force=true",
                         status, content_type="application/apply-patch+yaml")


def node_manifest(name: str, gpus: int, cpu: str, memory: str, pods: str = "110", storage: str = "1Ti") -> dict:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "type": "kwok"}
    taints = []
    capacity = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": storage}
    if gpus:
        labels.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": GPU_PRODUCT,
                       "nvidia.com/gpu.count": str(gpus)})
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
        capacity["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity,
                   "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "fake",
                                "kubeProxyVersion": "fake"}},
    }


def _ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "env", "build", "images"],
                    help="build: the binaries; images: the real node's images, where a real node can run")
    ap.add_argument("--dir", default=os.environ.get("MODELPLANE_CLUSTER_DIR", str(DEFAULT_DIR)))
    ap.add_argument("--no-real-node", action="store_true", help="kwok nodes only")
    args = ap.parse_args(argv)
    cluster = Cluster(Path(args.dir), real_node=not args.no_real_node)
    if args.command == "build":
        print(build_binaries())
    elif args.command == "images":
        # Built before the tests (not inside a test's time limit): a cold build takes 10 minutes or more.
        bin_dir = build_binaries()
        reason = realnode.unavailable_reason(bin_dir)
        if reason:
            log(f"no real node here ({reason}): its images are not built")
        else:
            image_builder.build_images(bin_dir)
    elif args.command == "up":
        cluster.up()
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    elif args.command == "down":
        cluster.down()
    elif args.command == "env":
        print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
