"""A real Kubernetes node for the local cluster: containerd, runc and the CNI plugins (Debian's packages), kubelet
and kube-proxy (built from the pinned Kubernetes), and CoreDNS as the cluster DNS, where pods really run.

It leaves the host as it was. Everything lives in a network namespace of its own (hack/nodeproxy.py joins it to the
control plane on the host's loopback); kubelet runs in a mount namespace of its own too, where the kernel settings
it insists on writing are files, and where its hard-coded folders (/var/lib/kubelet, /var/log) are private; pods
run under a cgroup of this cluster's own. `down` removes every pod, process, mount and cgroup it made.

Needs root, cgroups and Linux; `unavailable_reason()` says in one line why not, and the cluster then runs with
kwok nodes only. containerd's image store is kept between clusters (one folder per concurrent cluster, under the
cache) so that the images, built by hack/images.py, are imported once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import images as image_builder
from procs import alive, kill

HACK = Path(__file__).resolve().parent
NODE_NAME = "real-cpu-0"
NODE_IP = "10.99.0.1"
DNS_IP = "10.96.0.10"
CNI_BIN = Path("/usr/lib/cni")
PACKAGES = ["containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "iproute2", "buildah",
            "debootstrap"]
CGROUP_V1 = Path("/sys/fs/cgroup")
# kubelet writes these and refuses to start when it cannot; in its own mount namespace they are files.
KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


def log(msg: str) -> None:
    print(f"[realnode {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("MODELPLANE_CACHE")
                or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelplane")


def ensure_packages() -> None:
    """Installs containerd, runc, the CNI plugins and the image tools from Debian's packages when root can."""
    if all(shutil.which(t) for t in ("containerd", "runc", "iptables", "conntrack", "buildah", "debootstrap")) \
            and (CNI_BIN / "bridge").exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    log(f"installing {' '.join(PACKAGES)} from Debian's packages (once)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def unavailable_reason(bin_dir: Path) -> str | None:
    """None when a real node can start here; else why not, in one line."""
    if os.environ.get("MODELPLANE_REAL_NODE", "1") == "0":
        return "MODELPLANE_REAL_NODE=0"
    if platform.system() != "Linux":
        return f"a real node needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return ("a real node needs root (containerd, network and mount namespaces, cgroups); as root, `make` installs "
                f"Debian's {' '.join(PACKAGES[:3])}")
    if not (CGROUP_V1 / "memory").is_dir() and not (CGROUP_V1 / "cgroup.controllers").exists():
        return "no cgroup hierarchy at /sys/fs/cgroup"
    try:
        ensure_packages()
    except subprocess.CalledProcessError as e:
        return f"installing {' '.join(PACKAGES)} failed ({e})"
    missing = [t for t in ("containerd", "runc", "iptables", "nsenter", "unshare", "ip") if not shutil.which(t)]
    missing += [str(p) for p in (CNI_BIN / "bridge", CNI_BIN / "host-local", CNI_BIN / "loopback") if not p.exists()]
    missing += [b for b in ("kubelet", "kube-proxy", "crictl", "coredns") if not (bin_dir / b).exists()]
    if missing:
        return f"missing {', '.join(missing)}"
    return None


def cgroup_hierarchies() -> list[Path]:
    """Every cgroup v1 hierarchy (kubelet needs its cgroup root in each); the unified one has no controllers here."""
    return sorted(p for p in CGROUP_V1.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "unified")


class RealNode:
    """One real node in `root` (its configuration, sockets, logs and kubelet's folders) for one cluster."""

    def __init__(self, root: Path, bin_dir: Path, pki: Path, api_port: int):
        self.root, self.bin, self.pki, self.api_port = root, bin_dir, pki, api_port
        self.logs = root / "logs"
        self.state_file = root / "state.json"
        self.sock = root / "containerd.sock"
        self.egress_sock = root / "egress.sock"
        self.kubelet_dir = root / "kubelet"
        self.cgroup_root = f"/modelplane/{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"

    # state ---------------------------------------------------------------------------------------------------
    def state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self, **changes) -> None:
        st = {**self.state(), **changes}
        self.state_file.write_text(json.dumps(st, indent=2))

    @property
    def netns(self) -> str:
        return f"/proc/{self.state()['pids']['netns']}/ns/net"

    def _spawn(self, name: str, cmd: list[str], **kw) -> int:
        out = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        pids = self.state().get("pids", {})
        pids[name] = proc.pid
        self._save(pids=pids)
        return proc.pid

    def in_node(self, *cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net={self.netns}", *cmd], check=check, capture_output=True, text=True,
                              **kw)

    # phase 1: before the API server starts --------------------------------------------------------------------
    def prepare(self) -> list[str]:
        """The node's network namespace and the relay into it; returns the API server flags that go with them."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.state_file.write_text("{}")
        self._spawn("netns", ["unshare", "--net", "--", "sleep", "infinity"])
        time.sleep(0.2)
        # The node IP sits on one end of a veth pair inside the namespace: an address kubelet can report and pods can
        # reach, and a device to route the Service range through (node -> ClusterIP needs a route; kube-proxy's
        # NAT rules then send it to a pod). No dummy devices in this kernel; veth is built in.
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "link", "add", "node0", "type", "veth", "peer", "name", "node0-peer"],
                    ["ip", "link", "set", "node0", "up"], ["ip", "link", "set", "node0-peer", "up"],
                    ["ip", "addr", "add", f"{NODE_IP}/32", "dev", "node0"],
                    ["ip", "route", "add", "10.96.0.0/16", "dev", "node0"]):
            self.in_node(*cmd)
        self._spawn("nodeproxy", [sys.executable, str(HACK / "nodeproxy.py"), "--netns", self.netns,
                                  "--listen", f"{NODE_IP}:{self.api_port}", "--to", f"127.0.0.1:{self.api_port}",
                                  "--egress", str(self.egress_sock)])
        egress = self.root / "egress-selector.yaml"
        egress.write_text(json.dumps({
            "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
            "egressSelections": [{"name": "cluster", "connection": {
                "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(self.egress_sock)}}}}]}))
        return [f"--egress-selector-config-file={egress}",
                f"--kubelet-client-certificate={self.pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={self.pki / 'apiserver-kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP"]

    # phase 2: once the API server answers ---------------------------------------------------------------------
    def start(self, kubeconfig_for, images: list | None) -> None:
        """containerd (images imported), kubelet and kube-proxy; returns once they run (the caller waits for the
        Node to be Ready). `kubeconfig_for(user, org, server)` writes a kubeconfig with a client certificate."""
        server = f"https://{NODE_IP}:{self.api_port}"
        self._start_containerd()
        if images:
            image_builder.import_images(str(self.sock), images)
        self._start_kubelet(kubeconfig_for(f"system:node:{NODE_NAME}", "system:nodes", server))
        self._start_kube_proxy(kubeconfig_for("system:kube-proxy", None, server))

    def _containerd_root(self) -> Path:
        """A kept image store, one per concurrent cluster: the first whose lock is free. containerd inherits the lock
        and holds it while it runs."""
        base = cache_dir() / "node"
        base.mkdir(parents=True, exist_ok=True)
        for slot in range(8):
            fd = os.open(base / f"containerd-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._lock_fd = fd
            return base / f"containerd-{slot}"
        raise RuntimeError(f"eight real-node clusters already run on this machine (locks in {base})")

    def _start_containerd(self) -> None:
        root = self._containerd_root()
        state = self.root / "containerd-state"
        cni_conf = self.root / "cni"
        cni_conf.mkdir(exist_ok=True)
        config = self.root / "containerd.toml"
        config.write_text(f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{self.root / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image_builder.PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj below the caller's
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
""")
        self._spawn("containerd", ["nsenter", f"--net={self.netns}", "containerd", "--config", str(config)],
                    pass_fds=(self._lock_fd,))
        os.close(self._lock_fd)
        self._save(containerd_root=str(root))
        self._wait(lambda: self.crictl("info", check=False).returncode == 0, 60, "containerd")
        # A previous cluster that died without `down` may have left pods in this image store: remove them.
        self.crictl("rmp", "--all", "--force", check=False)

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "crictl"), "--runtime-endpoint", f"unix://{self.sock}",
                               "--timeout", "30s", *args], check=check, capture_output=True, text=True)

    def write_cni_config(self, pod_cidr: str) -> None:
        """The node's pod network: a bridge with host-local addresses from the node's podCIDR (given by the
        controller manager once kubelet registers), masquerading what leaves the pod range."""
        conf = {"cniVersion": "0.4.0", "name": "modelplane", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(self.root / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}}]}
        tmp = self.root / "cni" / ".10-modelplane.conflist"
        tmp.write_text(json.dumps(conf, indent=2))
        tmp.rename(self.root / "cni" / "10-modelplane.conflist")

    def _start_kubelet(self, kubeconfig: Path) -> None:
        for h in cgroup_hierarchies():
            (h / self.cgroup_root.lstrip("/")).mkdir(parents=True, exist_ok=True)
        self.kubelet_dir.mkdir(exist_ok=True)
        # kubelet's volume mounts must reach containerd, which lives in the host's mount namespace: its root folder is
        # a shared mount, and kubelet's own namespace keeps it shared (everything else there stays private).
        if subprocess.run(["mountpoint", "-q", str(self.kubelet_dir)]).returncode != 0:
            subprocess.run(["mount", "--bind", str(self.kubelet_dir), str(self.kubelet_dir)], check=True)
        subprocess.run(["mount", "--make-rshared", str(self.kubelet_dir)], check=True)
        sysctls = self.root / "sysctl"
        sysctls.mkdir(exist_ok=True)
        binds = []
        for key, value in KUBELET_SYSCTLS.items():
            f = sysctls / key.replace("/", ".")
            f.write_text(value + "\n")
            binds.append(f"mount --bind {f} /proc/sys/{key}")
        (self.root / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # no upstream DNS here
        config = self.root / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs", "cgroupRoot": self.cgroup_root,
            # cgroups v1 here; pinned because kubelet's default is expected to refuse v1
            "failCgroupV1": False, "failSwapOn": False,
            "oomScoreAdj": 0, "protectKernelDefaults": False,
            "clusterDNS": [DNS_IP], "clusterDomain": "cluster.local", "resolvConf": str(self.root / "resolv.conf"),
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            # images are imported, never pulled: never garbage-collect them, never evict for a full disk
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "podLogsDir": str(self.root / "pod-logs"), "volumePluginDir": str(self.root / "volume-plugins"),
            "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1", "serializeImagePulls": False,
            "registerWithTaints": [], "nodeStatusReportFrequency": "10s",
        }, indent=2))
        kubelet = " ".join([
            str(self.bin / "kubelet"), f"--config={config}", f"--kubeconfig={kubeconfig}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", f"--root-dir={self.kubelet_dir}",
            f"--cert-dir={self.root / 'kubelet-pki'}", "--node-labels=modelplane.dev/node=real", "--v=1"])
        script = "; ".join(["set -e", "mount --make-rprivate /proc", *binds,
                            # private copies of the folders kubelet writes outside --root-dir
                            "mount -t tmpfs kubelet-var-lib /var/lib", "mount -t tmpfs kubelet-var-log /var/log",
                            f"exec {kubelet}"])
        self._spawn("kubelet", ["nsenter", f"--net={self.netns}", "unshare", "--mount", "--propagation", "unchanged",
                                "sh", "-c", script])

    def _start_kube_proxy(self, kubeconfig: Path) -> None:
        config = self.root / "kube-proxy.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)}, "mode": "iptables",
            "clusterCIDR": "10.244.0.0/16", "hostnameOverride": NODE_NAME, "oomScoreAdj": 0,
            # zero: leave the kernel's global conntrack settings alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
        }, indent=2))
        self._spawn("kube-proxy", ["nsenter", f"--net={self.netns}", str(self.bin / "kube-proxy"),
                                   f"--config={config}", "--v=1"])

    # --------------------------------------------------------------------------------------------------------------
    def alive(self) -> bool:
        pids = self.state().get("pids", {})
        return bool(pids) and all(alive(p) for p in pids.values())

    def _wait(self, check, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if check():
                return
            dead = [n for n, p in self.state().get("pids", {}).items() if not alive(p)]
            if dead:
                raise RuntimeError(f"{dead[0]} exited; see {self.logs / (dead[0] + '.log')}")
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready in {timeout:.0f}s; logs in {self.logs}")

    def down(self) -> None:
        """Stops kubelet first (so nothing restarts), removes every pod through the CRI (their network torn down),
        then stops the rest and removes mounts and cgroups."""
        st = self.state()
        pids = st.get("pids", {})
        if not pids:
            return
        kill(pids.get("kubelet"))
        if alive(pids.get("containerd")) and (self.bin / "crictl").exists():
            self.crictl("rmp", "--all", "--force", check=False)
        for name in ("kube-proxy", "containerd"):
            kill(pids.get(name))
        self._kill_leftovers()
        for name in ("nodeproxy", "netns"):
            kill(pids.get(name))
        subprocess.run(["umount", "--recursive", "--lazy", str(self.kubelet_dir)], capture_output=True)
        for h in cgroup_hierarchies():
            _remove_cgroup(h / self.cgroup_root.lstrip("/"))
        self._save(pids={})

    def _kill_leftovers(self) -> None:
        """containerd's shims, and any process still in this node's cgroups (a pod kubelet never got to remove)."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(self.sock).encode() in cmdline:
                kill(int(proc.name), grace=0)
        for h in cgroup_hierarchies():
            for procs in (h / self.cgroup_root.lstrip("/")).rglob("cgroup.procs"):
                for pid in procs.read_text().split():
                    kill(int(pid), grace=0)


def _remove_cgroup(path: Path) -> None:
    if not path.is_dir():
        return
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        path.rmdir()
        path.parent.rmdir()  # /modelplane, once the last cluster's is gone
    except OSError:
        pass
