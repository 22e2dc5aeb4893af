"""KubeAI's controller as the benchmark's side-by-side peer (issue 14): build, configure, start and stop it.

KubeAI v0.21.0 is third-party (Apache-2.0), built unmodified from ../shared/third_party by hack/build-kubeai.sh and
run as its own process against the bench's local control plane, in a namespace of its own (it watches only
POD_NAMESPACE). Nothing of it is copied here: this module writes its system config (the fields its validation asks
for, read from its documentation and config code), its Models, and reads its log.

What it does differently from modelplane (see bench/README.md "KubeAI side by side"): bare Pods `model-<name>-*`
(no Deployment, no Service; a ConfigMap `model-<name>-files` comes first), one reconcile worker that sleeps 3 s
after each reconcile that created or deleted pods, and leader election that is always on (two leases: the
manager's and the autoscaler's).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import kubernetes
from kubernetes import watch

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "hack" / "build-kubeai.sh"
NAMESPACE = "bench-kubeai"
GROUP, VERSION = "kubeai.org", "v1"
USER_AGENTS = ("kubeai/",)  # rest.DefaultKubernetesUserAgent(): the binary's name first
STATE_CONFIGMAP = "kubeai-autoscaler-state"
PROXY_PORT = 8000  # its OpenAI proxy: always ":8000", on every interface, not configurable
MANAGER_LEASE = "cc6bca10.substratus.ai"
# Lease settings. "default": none given, so its own defaults (15 s / 10 s / 2 s). "short": the shortest that still
# elect one leader. client-go accepts any positive durations with leaseDuration > renewDeadline > 1.2 x retryPeriod,
# but the Lease object stores the duration in whole seconds and candidates read it from there: under 1 s it would be
# stored as 0, every candidate would take the lease at once, and two replicas would both lead. So 1 s, with the
# renew deadline and retry period below it (the leader renews every retry period: 4 renewals a second per lease).
LEASES = {"default": None,
          "short": {"leaseDuration": "1s", "renewDeadline": "750ms", "retryPeriod": "250ms"}}
# Like modelplane's bench Model (bench/run.py model()): 100m CPU, 256Mi, no GPU.
CPU_PROFILE = {"imageName": "cpu", "requests": {"cpu": "100m", "memory": "256Mi"}}


def versions() -> dict:
    return dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def cached_binary() -> Path | None:
    """The cached binary (and its CRD beside it), or None. Same cache folder rule as hack/build-kubeai.sh."""
    cache = Path(os.environ.get("MODELPLANE_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modelplane")
    binary = cache / "bin" / f"kubeai-{versions()['KUBEAI_VERSION']}" / "kubeai"
    return binary if binary.is_file() and os.access(binary, os.X_OK) and crd(binary).is_file() else None


def crd(binary: Path) -> Path:
    return binary.parent / "kubeai.org_models.yaml"


def build(timeout: float = 1800) -> tuple[Path | None, str]:
    """(binary, "") once built or cached, else (None, why not)."""
    binary = cached_binary()
    if binary:
        return binary, ""
    try:
        out = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"hack/build-kubeai.sh took more than {timeout:.0f} s"
    if out.returncode != 0:
        return None, f"hack/build-kubeai.sh failed (rc {out.returncode}): {out.stderr.strip()[-600:]}"
    return cached_binary(), ""


def port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def system_config(metrics_port: int, health_port: int, lease: str = "default") -> dict:
    """A minimal system config (CONFIG_PATH): what its validation requires, a `cpu` resource profile like
    modelplane's bench Model, metrics and health on loopback ports, and the lease settings named."""
    config = {
        "secretNames": {"alibaba": "kubeai-alibaba", "aws": "kubeai-aws", "gcp": "kubeai-gcp",
                        "huggingface": "kubeai-huggingface"},  # optional references: they need not exist
        "resourceProfiles": {"cpu": CPU_PROFILE},
        "cacheProfiles": {},
        "modelServers": {"VLLM": {"images": {"default": "vllm/vllm-openai:v0.8.3",
                                             "cpu": "substratusai/vllm:v0.6.3.post1-cpu"}}},
        "modelLoading": {"image": "substratusai/kubeai-model-loader:v0.14.0"},
        "modelRollouts": {"surge": 1},
        "modelServerPods": {},
        "modelAutoscaling": {"interval": "10s", "timeWindow": "10m", "stateConfigMapName": STATE_CONFIGMAP},
        "messaging": {"errorMaxBackoff": "30s", "streams": []},
        "metricsAddr": f"127.0.0.1:{metrics_port}",
        "healthAddress": f"127.0.0.1:{health_port}",
        "fixedSelfMetricAddrs": [f"127.0.0.1:{metrics_port}"],  # not in a pod: where its autoscaler scrapes itself
    }
    if LEASES[lease]:
        config["leaderElection"] = LEASES[lease]
    return config


def model(name: str, namespace: str = NAMESPACE) -> dict:
    """A KubeAI Model equivalent to modelplane's bench Model: vLLM, the same weights, CPU, one replica."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": name, "namespace": namespace},
            "spec": {"engine": "VLLM", "url": "hf://Qwen/Qwen2.5-7B-Instruct", "features": ["TextGeneration"],
                     "resourceProfile": "cpu:1", "minReplicas": 1,
                     # the CRD's defaults, given because kubectl's schema check asks for them
                     "targetRequests": 100, "scaleDownDelaySeconds": 30}}


def install(kube, binary: Path, namespace: str = NAMESPACE) -> None:
    """Its CRD, its namespace and the autoscaler's state ConfigMap (it must exist before KubeAI starts)."""
    kube.run("apply", "--server-side", "-f", str(crd(binary)))
    kube.wait_for(lambda: "Established" in kube.run(
        "get", "crd", "models.kubeai.org", "-o", "jsonpath={.status.conditions[?(@.status=='True')].type}",
        check=False).stdout, timeout=60, what="KubeAI's Model CRD established")
    kube.run("create", "namespace", namespace)
    kube.run("create", "configmap", STATE_CONFIGMAP, "-n", namespace)


class KubeAI:
    """The KubeAI binary as its own process (own process group, log file, loopback metrics and health ports)."""

    def __init__(self, kube, workdir: Path, binary: Path, lease: str = "default", namespace: str = NAMESPACE,
                 name: str = "kubeai"):
        self.kube, self.binary, self.lease, self.namespace = kube, binary, lease, namespace
        self.log_path, self.config_path = workdir / f"{name}.log", workdir / f"{name}-config.yaml"
        self.metrics_port, self.health_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.started = 0.0  # monotonic time of the process start
        self._offset, self._reconciled, self._leader_at = 0, {}, None

    def start(self) -> "KubeAI":
        if not port_free(PROXY_PORT):
            raise RuntimeError(f"port {PROXY_PORT} is taken: KubeAI's proxy always binds it")
        self.config_path.write_text(json.dumps(system_config(self.metrics_port, self.health_port, self.lease),
                                               indent=2))  # JSON is YAML
        env = {**self.kube.env, "POD_NAMESPACE": self.namespace, "CONFIG_PATH": str(self.config_path)}
        log = open(self.log_path, "ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(self.binary), f"--kubeconfig={self.kube.env['KUBECONFIG']}",
                                      "--zap-encoder=json"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        end = time.monotonic() + 60
        while time.monotonic() < end:  # the health listener opens before leader election
            try:
                socket.create_connection(("127.0.0.1", self.health_port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"KubeAI exited:\n{self.log()[-3000:]}")
                time.sleep(0.2)
        raise RuntimeError(f"KubeAI not listening on {self.health_port}:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _read_log(self) -> None:
        """New lines since the last read: which Models it began to reconcile (its one worker runs them one after
        another, so a Model's reconcile starting means every earlier one finished) and when it became leader; times
        are when this process read them (polled every 0.2 s)."""
        now = time.monotonic()
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            if b"successfully acquired lease" in line and MANAGER_LEASE.encode() in line and self._leader_at is None:
                self._leader_at = now
            if b"Reconciling Model" not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            name = entry.get("name") or (entry.get("Model") or {}).get("name")
            if name:
                self._reconciled.setdefault(name, now)

    def wait_reconciled(self, names: set[str], timeout: float = 900) -> dict:
        """Seconds from the process start until it led (the manager's lease) and until it began the reconcile of the
        last of `names` (with one worker, every earlier one was done), and then until the queue went idle."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._read_log()
            if names <= set(self._reconciled):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"KubeAI exited:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        done = [self._reconciled[n] for n in names if n in self._reconciled]
        return {"leader_s": round(self._leader_at - self.started, 1) if self._leader_at else None,
                "all_reconciled_s": round(max(done) - self.started, 1) if len(done) == len(names) else None,
                "reconciled": len(done), "models": len(names)}


class PeerWatcher:
    """Watches one namespace's pods (by a label naming their Model) and, for KubeAI, its Models: when each Model's
    first pod was seen, first Running and first Ready, and when a KubeAI Model first reported a ready replica; in this
    process's monotonic clock, like bench/run.py's Watcher."""

    def __init__(self, kubeconfig: Path, namespace: str, model_label: str, kubeai_models: bool = False):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
        self.client = kubernetes.client.ApiClient(config)
        self.client.user_agent = "modelplane-bench"
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.namespace, self.label = namespace, model_label
        self.pod: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.pod_ready: dict[str, float] = {}
        self.model_seen: dict[str, float] = {}
        self.model_ready: dict[str, float] = {}
        self.changed = threading.Condition()
        core = kubernetes.client.CoreV1Api(self.client)
        streams = [lambda **kw: core.list_namespaced_pod(namespace, label_selector=model_label, **kw)]
        if kubeai_models:
            streams.append(lambda **kw: self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                                                  "models", **kw))
        for lister in streams:
            threading.Thread(target=self._follow, args=(lister,), daemon=True).start()

    def _follow(self, lister):
        while True:
            try:
                for event in watch.Watch().stream(lister, timeout_seconds=0, _request_timeout=None):
                    self._note(event["object"], time.monotonic())
            except Exception:  # noqa: BLE001  a dropped watch: start again
                time.sleep(0.5)

    def _note(self, obj, t: float) -> None:
        if not isinstance(obj, dict):
            obj = self.client.sanitize_for_serialization(obj)
        status = obj.get("status") or {}
        with self.changed:
            if obj.get("kind") == "Model":
                name = obj["metadata"]["name"]
                self.model_seen.setdefault(name, t)
                if ((status.get("replicas") or {}).get("ready") or 0) >= 1:
                    self.model_ready.setdefault(name, t)
            else:
                name = (obj["metadata"].get("labels") or {}).get(self.label)
                if not name:
                    return
                self.pod.setdefault(name, t)
                if status.get("phase") == "Running":
                    self.running.setdefault(name, t)
                if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
                    self.pod_ready.setdefault(name, t)
            self.changed.notify_all()

    def wait(self, fn, timeout: float = 600) -> bool:
        with self.changed:
            return self.changed.wait_for(fn, timeout)

    def models(self) -> int:
        with self.changed:
            return len(self.model_seen)
