"""Benchmarks of the operator on the local control plane (issue 6, modelplane side; see bench/README.md).

    python bench/run.py [--models N] [--samples S] [--agents A] [--unrelated U] [--only a,b] [--peer kubeai|none]
                        [--out bench/results]

Writes results.json, results.md and latency.png. With `--peer kubeai` (the default) KubeAI's controller (bench/kubeai.py)
runs the side-by-side scenarios after modelplane's, on the same control plane, with modelplane's operator stopped. Timings on a shared 2-core machine are noisy: medians and spreads
are reported, and benchmarks never fail a test run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import kubernetes
from kubernetes import watch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "hack"), str(REPO / "tests")]

import kubeai  # noqa: E402  (bench/kubeai.py: the side-by-side peer)
from harness import Kube, Operator  # noqa: E402
from localcluster import BIG_NODE, NODES, Cluster  # noqa: E402
from modelplane_operator.agent import AGENT_LABEL, configmap_name  # noqa: E402
from modelplane_operator.agentconfig import INDEX_FILE  # noqa: E402
from modelplane_operator.config import GROUP, VERSION  # noqa: E402
from modelplane_operator.keys import INJECT_LABEL, INJECTED_ANNOTATION, MODEL_LABEL, MODELS_ANNOTATION  # noqa: E402

NS = "bench"
OPERATOR_AGENTS = ("kopf/", "modelplane-operator")  # user agents of the operator's two API clients
READS, WRITES = {"get", "list", "watch"}, {"create", "update", "patch", "delete", "deletecollection"}
# Scenarios --only can pick. The burst always runs: the scenarios after it measure with its Models present.
SCENARIOS = ("latency", "admission", "steady", "restart", "agents", "unrelated")
# Admission: injected pods live in a namespace of their own with one Model of their own. In the bench namespace the
# first injected pod would make the operator keep a namespace ConfigMap of all its Models (rebuilt on every Model
# event of the burst, and growing with each Model), which would change what the burst measures.
ADMISSION_NS, ADMISSION_MODEL, ADMISSION_INTERVAL = "admission", "adm", 0.2
UNRELATED_NAMESPACES = [f"unrelated-{i:02d}" for i in range(20)]
NEVER_SCHEDULED = [{"name": "bench.modelplane.dev/never"}]  # a scheduling gate nobody removes: no node, no kwok
PAUSE = "registry.k8s.io/pause:3.10"  # never pulled: the pods never run
# The big kwok node with room for both operators' pods (about 1250 of modelplane's, 1050 of KubeAI's).
BENCH_BIG_NODE = {**BIG_NODE, "pods": "4000"}


def model(name: str, namespace: str = NS, **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": name, "namespace": namespace},
            "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 0,
                     "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}, **spec}}


def agent(name: str, model_name: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": name, "namespace": NS},
            "spec": {"image": "modelplane-agent:0.1.0", "models": [{"name": model_name, "default": True}],
                     "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}}


def create_many(kube: Kube, docs: list[dict], chunk: int = 100, threads: int = 1) -> None:
    """Server-side apply in chunks (kubectl's client-side apply is the slow part), from `threads` kubectls at once."""
    def apply(items):
        kube.run("apply", "--server-side", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                         "items": items}))
    chunks = [docs[i:i + chunk] for i in range(0, len(docs), chunk)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(apply, chunks))  # re-raises the first failure


def make_namespaces(kube: Kube, names: list[str]) -> None:
    """Namespaces, and their default ServiceAccount (a pod is refused until the controller made it)."""
    create_many(kube, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names])
    kube.wait_for(lambda: set(names) <= set(kube.run("get", "serviceaccounts", "-A", "--field-selector",
                                                     "metadata.name=default", "-o",
                                                     "jsonpath={.items[*].metadata.namespace}").stdout.split()),
                  timeout=120, what=f"default ServiceAccounts in {names}")


def unrelated_pod(i: int) -> dict:
    """A pod the operator has no business with: no modelplane label in a namespace without one (so neither of the
    webhook's two selectors sends it to the operator), gated so that it is never scheduled nor run."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"u{i:06d}", "namespace": UNRELATED_NAMESPACES[i % len(UNRELATED_NAMESPACES)],
                         "labels": {"app": "unrelated"}},
            "spec": {"schedulingGates": NEVER_SCHEDULED, "automountServiceAccountToken": False,
                     "containers": [{"name": "pause", "image": PAUSE,
                                     "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}}


def unrelated_configmap(i: int) -> dict:
    """About 1 KiB of data, so that listing them all would weigh something."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"u{i:06d}", "namespace": UNRELATED_NAMESPACES[i % len(UNRELATED_NAMESPACES)],
                         "labels": {"app": "unrelated"}},
            "data": {"blob": (f"{i:06d}" * 171)[:1024]}}


class Watcher:
    """Watches the bench namespace and notes when each object was first seen and each Model first went Ready, in
    this process's monotonic clock: latencies without any polling overhead."""

    def __init__(self, kubeconfig: Path):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
        self.client = kubernetes.client.ApiClient(config)
        self.client.user_agent = "modelplane-bench"
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.pods = kubeai.PeerWatcher(kubeconfig, NS, MODEL_LABEL)  # each Model's first pod Running
        self.seen: dict[tuple[str, str], float] = {}
        self.ready: dict[str, float] = {}
        self.served: dict[str, set] = {}  # Agent ConfigMap -> served names its index and client configs give
        self.changed = threading.Condition()
        core, apps = kubernetes.client.CoreV1Api(self.client), kubernetes.client.AppsV1Api(self.client)
        streams = {"Deployment": lambda **kw: apps.list_namespaced_deployment(NS, **kw),
                   "Service": lambda **kw: core.list_namespaced_service(NS, **kw),
                   "ConfigMap": lambda **kw: core.list_namespaced_config_map(NS, label_selector=AGENT_LABEL,
                                                                               **kw),
                   "Model": lambda **kw: self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "models",
                                                                                   **kw)}
        for kind, lister in streams.items():
            threading.Thread(target=self._follow, args=(kind, lister), daemon=True).start()

    def _follow(self, kind, lister):
        while True:
            try:
                for event in watch.Watch().stream(lister, timeout_seconds=0, _request_timeout=None):
                    self._note(kind, event["object"], time.monotonic())
            except Exception:  # noqa: BLE001  a dropped watch: start again
                time.sleep(0.5)

    def _note(self, kind: str, obj, t: float) -> None:
        if not isinstance(obj, dict):
            obj = self.client.sanitize_for_serialization(obj)
        name = obj["metadata"]["name"]
        with self.changed:
            self.seen.setdefault((kind, name), t)
            if kind == "Model" and (obj.get("status") or {}).get("phase") == "Ready":
                self.ready.setdefault(name, t)
            if kind == "ConfigMap":
                self.served[name] = served_names(obj.get("data") or {})
            self.changed.notify_all()

    def wait(self, fn, timeout: float = 600):
        with self.changed:
            if not self.changed.wait_for(fn, timeout):
                raise TimeoutError(f"benchmark condition not met in {timeout} s")

    def models(self) -> int:
        """Models present (the benchmark never deletes one)."""
        with self.changed:
            return sum(kind == "Model" for kind, _ in self.seen)

    def create_model(self, name: str) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "models", model(name))

    def latency(self, name: str) -> dict:
        """Seconds from the create request to: Deployment and Service seen (children), the Deployment alone (the first
        child, as KubeAI's first is its Pod), Model Ready, and the Model's first pod Running."""
        start = time.monotonic()
        self.create_model(name)
        self.wait(lambda: ("Deployment", name) in self.seen and ("Service", name) in self.seen and name in self.ready)
        self.pods.wait(lambda: name in self.pods.running, 60)
        return {"children": max(self.seen[("Deployment", name)], self.seen[("Service", name)]) - start,
                "ready": self.ready[name] - start, "first_child": self.seen[("Deployment", name)] - start,
                "running": self.pods.running.get(name, float("nan")) - start}


class Admission:
    """Pod CREATE requests that the operator's injection webhook mutates, timed in this process (the kubernetes
    client, not kubectl: no process start in the figure). Each pod asks for the admission namespace's Model and is
    gated, so it never runs."""

    def __init__(self, kubeconfig: Path):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
        client = kubernetes.client.ApiClient(config)
        client.user_agent = "modelplane-bench"
        self.core = kubernetes.client.CoreV1Api(client)

    def create(self, name: str) -> tuple[float, bool]:
        """(seconds the create request took, whether the pod came back injected)."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "labels": {INJECT_LABEL: "true"},
                            "annotations": {MODELS_ANNOTATION: ADMISSION_MODEL}},
               "spec": {"schedulingGates": NEVER_SCHEDULED, "automountServiceAccountToken": False,
                        "containers": [{"name": "app", "image": PAUSE,
                                        "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]}}
        start = time.monotonic()
        response = self.core.create_namespaced_pod(ADMISSION_NS, pod, _preload_content=False)
        took = time.monotonic() - start
        return took, injected(json.loads(response.data))

    def series(self, prefix: str, count: int | None = None, stop: threading.Event | None = None) -> dict:
        """One pod every ADMISSION_INTERVAL s: `count` of them, or until `stop` is set (at least one)."""
        timings, not_injected, errors = [], 0, 0
        start = time.monotonic()
        for i in range(count if count is not None else sys.maxsize):
            if i and stop is not None and stop.is_set():
                break
            time.sleep(max(0.0, start + i * ADMISSION_INTERVAL - time.monotonic()))
            try:
                took, ok = self.create(f"{prefix}-{i:05d}")
            except Exception as e:  # noqa: BLE001  counted: a refused or timed-out create is a result too
                print(f"admission: creating {prefix}-{i:05d} failed: {e}", file=sys.stderr)
                errors += 1
                continue
            timings.append(took)
            not_injected += not ok
        return {"timings": timings, "not_injected": not_injected, "errors": errors}


def injected(pod: dict) -> bool:
    annotations = pod["metadata"].get("annotations") or {}
    env = {e["name"] for c in pod["spec"]["containers"] for e in c.get("env") or []}
    return f"{ADMISSION_NS}/{ADMISSION_MODEL}" in annotations.get(INJECTED_ANNOTATION, "").split(",") \
        and "OPENAI_BASE_URL" in env


class Audit:
    """The operator's own requests, read from the API server's audit log between two marks."""

    def __init__(self, path: Path, agents: tuple[str, ...] = OPERATOR_AGENTS):
        self.path, self.agents = path, agents  # whose requests: user agent prefixes

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def _operator_events(self, offset: int):
        with open(self.path, "rb") as f:
            f.seek(offset)
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if str(e.get("userAgent", "")).startswith(self.agents):
                    yield e

    def reads_of(self, offset: int, resources: set[str]) -> dict:
        """The operator's lists and watches of `resources` since `offset`: each distinct request (verb and URI, less
        the parameters that change every time) and how often, and how many had no label selector. The audit policy
        logs a request when it completes, so a watch shows once it ends."""
        seen: dict[str, int] = {}
        unselected = 0
        for e in self._operator_events(offset):
            ref = e.get("objectRef") or {}
            if e.get("verb") not in ("list", "watch") or ref.get("resource") not in resources \
                    or ref.get("subresource"):
                continue
            uri = urlsplit(e.get("requestURI", ""))
            query = sorted((k, v) for k, v in parse_qsl(uri.query) if k not in VOLATILE_PARAMETERS)
            unselected += not any(k == "labelSelector" and v for k, v in query)
            what = f"{e['verb']} {uri.path}" + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
            seen[what] = seen.get(what, 0) + 1
        return {"requests": dict(sorted(seen.items())), "without_label_selector": unselected}

    def since(self, offset: int) -> dict:
        counts = {"reads": 0, "writes": 0}
        for e in self._operator_events(offset):
            verb = e.get("verb")
            kind = "reads" if verb in READS else "writes" if verb in WRITES else "other"
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "writes":  # which writes: children, status, Events, kopf's own annotations
                ref = e.get("objectRef") or {}
                what = "/".join(filter(None, (ref.get("resource"), ref.get("subresource"))))
                counts.setdefault("writes_by_resource", {})
                counts["writes_by_resource"][what] = counts["writes_by_resource"].get(what, 0) + 1
        return counts


VOLATILE_PARAMETERS = {"resourceVersion", "resourceVersionMatch", "timeoutSeconds", "continue", "limit",
                       "allowWatchBookmarks", "sendInitialEvents"}


def served_names(data: dict) -> set:
    """The served names an agent would use: from index.json and from each AutoGen component config."""
    names = set()
    for file, text in data.items():
        doc = json.loads(text)
        names |= {e["servedModelName"] for e in doc["models"]} if file == INDEX_FILE else {doc["config"]["model"]}
    return names


def versions(kube: Kube) -> dict:
    """resourceVersion of every Model, Deployment and Service: unchanged means nobody wrote them."""
    return {f"{k}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for k in ("models", "deployments", "services")
            for o in json.loads(kube.run("get", k, "-n", NS, "-o", "json").stdout)["items"]}


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak resident MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return cpu, _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, field: str) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith(field))


def summary(values: list[float]) -> dict:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"median_ms": round(statistics.median(values) * 1000, 1), "p90_ms": round(pick(0.9) * 1000, 1),
            "p99_ms": round(pick(0.99) * 1000, 1), "min_ms": round(values[0] * 1000, 1),
            "max_ms": round(values[-1] * 1000, 1), "n": len(values)}


def sample_latency(w: Watcher, samples: int) -> dict:
    lat = [w.latency(f"l{w.models()}-{i}") for i in range(samples)]
    return {k: summary([x[k] for x in lat]) for k in ("children", "ready", "first_child", "running")}


def rss_mb(pid: int) -> float:
    return round(_status_kb(pid, "VmRSS") / 1024, 1)


def wait_reconciled(op: Operator, models: int, timeout: float = 600) -> float:
    """Seconds until a (re)started operator has reconciled as often as there are Models (its own metric)."""
    t0 = time.monotonic()
    while op.metric("modelplane_reconciles_total") < models and time.monotonic() - t0 < timeout:
        time.sleep(0.2)
    return time.monotonic() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1000, help="size of the burst and of the largest background")
    ap.add_argument("--samples", type=int, default=20, help="latency samples per background size")
    ap.add_argument("--agents", type=int, default=100, help="Agents referencing one Model (propagation)")
    ap.add_argument("--steady-seconds", type=int, default=60)
    ap.add_argument("--unrelated", type=int, default=20000,
                    help="unrelated Pods and as many ConfigMaps the operator must not watch (0: skip)")
    ap.add_argument("--admission-pods", type=int, default=50, help="pods admitted one by one while idle")
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help=f"comma list of {', '.join(SCENARIOS)} (the burst always runs)")
    ap.add_argument("--peer", choices=("kubeai", "none"), default="kubeai",
                    help="run KubeAI side by side after modelplane (built or taken from the cache first; a peer that "
                         "cannot be built is reported in the results, not a failure)")
    ap.add_argument("--peer-leases", default=",".join(kubeai.LEASES),
                    help="KubeAI lease settings whose restart is measured (default: its own; short: 1 s)")
    ap.add_argument("--peer-timeout", type=float, default=5400,
                    help="seconds KubeAI's burst may take (one worker, 3 s pause per new Model: about 3000 s for 1000)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    leases = [x.strip() for x in args.peer_leases.split(",") if x.strip()]
    if set(leases) - set(kubeai.LEASES):
        ap.error(f"unknown --peer-leases {sorted(set(leases) - set(kubeai.LEASES))}; choose from {list(kubeai.LEASES)}")
    only = {s.strip() for s in args.only.split(",") if s.strip()} - {"burst"}
    if only - set(SCENARIOS):
        ap.error(f"unknown scenarios {sorted(only - set(SCENARIOS))}; choose from {', '.join(SCENARIOS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)  # a fresh control plane each run, never the last run's etcd
    peer_binary, peer_reason = kubeai.build() if args.peer == "kubeai" else (None, "--peer none")
    cluster = Cluster(work / "cluster", nodes=[*NODES, BENCH_BIG_NODE], audit=True)
    results = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()},
               "versions": dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines()
                                if "=" in line and not line.startswith("#")),
               "latency": {}}
    op = None
    try:  # whatever fails, the control plane and the operator are stopped
        cluster.up()
        kube = Kube(cluster)
        kube.install_crds(str(REPO / "crds"))
        kube.run("create", "namespace", NS)
        audit = Audit(cluster.audit_log)
        w = Watcher(cluster.kubeconfig)
        op = Operator(kube, work, verbose=False).start()
        if "admission" in only:
            make_namespaces(kube, [ADMISSION_NS])
            kube.apply(model(ADMISSION_MODEL, ADMISSION_NS))
        # 1. latency with 1 and then 100 Models present (capped by the burst size for the smoke run)
        for size in sorted({1, min(100, args.models)}):
            names = [f"p{i:04d}" for i in range(w.models(), size)]
            create_many(kube, [model(n) for n in names])
            w.wait(lambda: all(n in w.ready for n in names))
            if "latency" in only:
                results["latency"][str(size)] = sample_latency(w, args.samples)
        # 7. pod admission while the operator is idle
        if "admission" in only:
            kube.wait_for(lambda: ((kube.get("model", ADMISSION_MODEL, ADMISSION_NS) or {}).get("status") or {})
                          .get("phase") == "Ready", timeout=120, what=f"Model {ADMISSION_NS}/{ADMISSION_MODEL} Ready")
            admission = Admission(cluster.kubeconfig)
            idle = admission.series("idle", count=args.admission_pods)
            results["admission"] = {"idle_models": w.models() + 1, "idle_ms": summary(idle["timings"])}
        # 2. burst (and 7. pod admission all through it: one pod every ADMISSION_INTERVAL s)
        names = [f"b{i:04d}" for i in range(args.models)]
        if "admission" in only:
            stop, during = threading.Event(), {}
            pods = threading.Thread(target=lambda: during.update(admission.series("burst", stop=stop)), daemon=True)
        cpu0, _ = proc_stats(op.proc.pid)
        mark = audit.mark()
        t0 = time.monotonic()
        if "admission" in only:
            pods.start()
        create_many(kube, [model(n) for n in names])
        applied = time.monotonic() - t0
        w.wait(lambda: all(n in w.ready for n in names))
        burst = time.monotonic() - t0
        cpu1, peak = proc_stats(op.proc.pid)
        requests = audit.since(mark)
        w.pods.wait(lambda: all(n in w.pods.running for n in names), 60)
        running = [w.pods.running[n] for n in names if n in w.pods.running]
        results["burst"] = {"models": len(names), "all_ready_s": round(burst, 1), "apply_s": round(applied, 1),
                            "all_running_s": round(max(running) - t0, 1) if len(running) == len(names) else None,
                            "operator_cpu_s_per_model": round((cpu1 - cpu0) / len(names), 3),
                            "operator_cpu_s": round(cpu1 - cpu0, 1), "operator_peak_rss_mb": round(peak, 1),
                            "operator_requests": requests,
                            "operator_writes_per_model": round(requests["writes"] / len(names), 2),
                            "operator_reads_per_model": round(requests["reads"] / len(names), 2)}
        if "admission" in only:
            stop.set()
            pods.join(60)
            results["admission"].update({
                "burst_models": len(names), "during_burst_ms": summary(during["timings"]),
                "during_burst_pods": len(during["timings"]),
                "not_injected": idle["not_injected"] + during["not_injected"],
                "errors": idle["errors"] + during["errors"]})
        # 3. steady state
        if "steady" in only:
            before = versions(kube)
            cpu0, _ = proc_stats(op.proc.pid)
            mark = audit.mark()
            time.sleep(args.steady_seconds)
            cpu1, _ = proc_stats(op.proc.pid)
            after = versions(kube)
            results["steady"] = {"models": len(before) // 3, "seconds": args.steady_seconds,
                                 "objects_written": sum(before[k] != after.get(k) for k in before),
                                 "operator_requests": audit.since(mark),
                                 "operator_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / args.steady_seconds, 2),
                                 "operator_rss_mb": rss_mb(op.proc.pid)}
        # 1. latency with the burst's Models present
        if "latency" in only:
            present = w.models()
            results["latency"][str(present)] = sample_latency(w, args.samples)
        # 4. restart
        if "restart" in only:
            op.stop()
            before = versions(kube)
            mark = audit.mark()
            # its predecessor's webhook port and certificates, as a chart install's Service and Secret keep them: the
            # webhook configuration is found as it was left (nothing to write)
            op = Operator(kube, work, name="operator-restarted", verbose=False, webhook_port=op.webhook_port).start()
            total = len(before) // 3
            verified = wait_reconciled(op, total)
            time.sleep(2)  # anything the restart would write comes right after its reconcile
            results["restart"] = {"models": total, "verified_s": round(verified, 1),
                                  "objects_written": sum(before[k] != v for k, v in versions(kube).items()),
                                  "operator_requests": audit.since(mark),
                                  "operator_rss_mb": rss_mb(op.proc.pid),
                                  "operator_peak_rss_mb": round(proc_stats(op.proc.pid)[1], 1)}
        # 5. Agent propagation: a Model's served name changes; every referencing Agent's ConfigMap follows
        if args.agents and "agents" in only:
            results["agents"] = propagation(kube, w, args.agents)
        # 8. unrelated Pods and ConfigMaps: the operator must not list, watch or hold them
        if args.unrelated and "unrelated" in only:
            op, results["unrelated"] = unrelated(kube, op, work, audit, args.unrelated)
        # 6. KubeAI side by side: the same scenarios, one operator after the other (modelplane's stopped first)
        op.stop()
        if peer_binary:
            results["peer"] = peer(kube, cluster, work, peer_binary, args, leases, only)
        else:
            results["peer"] = {"name": "KubeAI", "status": "not built", "reason": peer_reason}
            print(f"KubeAI side by side skipped: {peer_reason}", file=sys.stderr)
        results["side_by_side"] = side_by_side(results)
    finally:
        if op:
            op.stop()
        cluster.down()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "latency.png")
    print(markdown(results))
    return 0


def peer(kube: Kube, cluster: Cluster, work: Path, binary: Path, args, leases: list[str], only: set[str]) -> dict:
    """KubeAI's figures for the side-by-side scenarios, in its own namespace, with modelplane's operator stopped:
    apply -> its Pod (its first child; modelplane's is a Deployment), -> pod Running, -> Model with a ready replica,
    with 1, 100 and all the burst's Models present; the burst; restarts with each lease setting. A failure is
    reported in the results (with the log's tail) and ends only the peer's part."""
    result = {"name": "KubeAI", "status": "ran", "version": kubeai.versions()["KUBEAI_VERSION"],
              "namespace": kubeai.NAMESPACE, "first_child": "Pod", "user_agents": list(kubeai.USER_AGENTS),
              "leases": {k: v or "KubeAI's defaults: leaseDuration 15s, renewDeadline 10s, retryPeriod 2s"
                         for k, v in kubeai.LEASES.items()},
              "latency": {}}
    audit = Audit(cluster.audit_log, kubeai.USER_AGENTS)
    k = None
    try:
        kubeai.install(kube, binary)
        pw = kubeai.PeerWatcher(cluster.kubeconfig, kubeai.NAMESPACE, "model", kubeai_models=True)
        custom = pw.custom
        # The first process runs with the first lease setting asked for (KubeAI's default in a full run): a run that
        # asks only for the short one (the smoke test) then never waits out a default lease before its restart.
        first_lease = leases[0] if leases else "default"
        k = kubeai.KubeAI(kube, work, binary, lease=first_lease).start()

        def ready_all(names, timeout):
            return pw.wait(lambda: all(n in pw.model_ready and n in pw.running for n in names), timeout)

        def sample(count: int) -> dict:
            lat = []
            for i in range(count):
                name = f"l{pw.models()}-{i}"
                start = time.monotonic()
                custom.create_namespaced_custom_object(kubeai.GROUP, kubeai.VERSION, kubeai.NAMESPACE, "models",
                                                       kubeai.model(name))
                if not ready_all([name], 120):
                    raise TimeoutError(f"KubeAI Model {name}: no ready pod in 120 s")
                lat.append({"first_child": pw.pod[name] - start, "running": pw.running[name] - start,
                            "ready": pw.model_ready[name] - start})
            return {key: summary([x[key] for x in lat]) for key in ("first_child", "running", "ready")}

        # 1. latency with 1 and then 100 Models present (each sample waits for the last one's ready replica: its one
        # worker is then free again, as modelplane's samples wait for Ready)
        for size in sorted({1, min(100, args.models)}):
            names = [f"p{i:04d}" for i in range(pw.models(), size)]
            create_many(kube, [kubeai.model(n) for n in names])
            if not ready_all(names, 60 + 5 * len(names)):
                raise TimeoutError(f"KubeAI: {len(names)} Models not ready")
            if args.samples and "latency" in only:
                result["latency"][str(size)] = sample(args.samples)
        # 2. burst
        names = [f"b{i:04d}" for i in range(args.models)]
        cpu0, _ = proc_stats(k.proc.pid)
        mark = audit.mark()
        t0 = time.monotonic()
        create_many(kube, [kubeai.model(n) for n in names])
        applied = time.monotonic() - t0
        complete = pw.wait(lambda: all(n in pw.running for n in names), args.peer_timeout)
        all_running = time.monotonic() - t0
        complete = complete and ready_all(names, max(60.0, args.peer_timeout - all_running))
        all_ready = time.monotonic() - t0
        cpu1, peak = proc_stats(k.proc.pid)
        requests = audit.since(mark)
        with pw.changed:
            pods, running = sum(n in pw.pod for n in names), sum(n in pw.running for n in names)
        result["burst"] = {"models": len(names), "lease": first_lease, "complete": complete,
                           "apply_s": round(applied, 1),
                           "all_running_s": round(all_running, 1) if complete else None,
                           "all_ready_s": round(all_ready, 1) if complete else None,
                           "pods_created": pods, "pods_running": running, "waited_s": round(all_ready, 1),
                           "operator_cpu_s": round(cpu1 - cpu0, 1),
                           "operator_cpu_s_per_model": round((cpu1 - cpu0) / len(names), 3),
                           "operator_peak_rss_mb": round(peak, 1), "operator_requests": requests,
                           "operator_writes_per_model": round(requests["writes"] / len(names), 2),
                           "operator_reads_per_model": round(requests["reads"] / len(names), 2)}
        if not complete:
            result["status"] = f"burst incomplete after {all_ready:.0f} s ({running} of {len(names)} pods Running)"
            return result
        # 1. latency with the burst's Models present
        if args.samples and "latency" in only:
            result["latency"][str(pw.models())] = sample(args.samples)
        # 4. restart, once per lease setting. A new process is a new candidate: it waits until the lease it finds
        # has run out (the old one never releases it). The lease it finds is the one its predecessor held, so a
        # short-lease restart follows a short-lease process (started and checked first, not measured).
        result["restart"] = {}
        lease_now = first_lease
        for lease in leases if "restart" in only else []:
            if lease != lease_now:
                k.stop()
                k = kubeai.KubeAI(kube, work, binary, lease=lease, name=f"kubeai-{lease}").start()
                k.wait_reconciled(set(pw.model_seen))
                lease_now = lease
            all_models = set(pw.model_seen)
            before = peer_versions(kube)
            k.stop()
            mark = audit.mark()
            k = kubeai.KubeAI(kube, work, binary, lease=lease, name=f"kubeai-{lease}-restarted").start()
            done = k.wait_reconciled(all_models)
            time.sleep(2)  # anything the restart would write comes right after its reconcile
            requests = audit.since(mark)
            by = requests.get("writes_by_resource", {})
            result["restart"][lease] = {
                "models": len(all_models), "lease": result["leases"][lease], **done,
                "verified_s": done["all_reconciled_s"],
                "objects_written": objects_written(before, peer_versions(kube)),
                "operator_requests": requests,
                "writes_without_leases": requests["writes"] - by.get("leases", 0),
                "lease_writes": by.get("leases", 0),
                "operator_rss_mb": rss_mb(k.proc.pid), "operator_peak_rss_mb": round(proc_stats(k.proc.pid)[1], 1)}
    except Exception as e:  # noqa: BLE001  the peer's failure is a result; modelplane's figures stay
        result["status"] = f"failed: {type(e).__name__}: {e}"[:2000]
        print(f"KubeAI side by side failed: {e}", file=sys.stderr)
    finally:
        if k:
            k.stop()
    return result


def objects_written(before: dict, after: dict) -> int:
    """Objects changed, created or deleted between two peer_versions()."""
    return sum(before.get(x) != v for x, v in after.items()) + len(before.keys() - after.keys())


def peer_versions(kube: Kube) -> dict:
    """resourceVersion of every KubeAI Model, pod and ConfigMap (it keeps a `model-<name>-files` one, and its
    autoscaler's state): unchanged means nobody wrote them."""
    return {f"{k}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for k in ("models.kubeai.org", "pods", "configmaps")
            for o in json.loads(kube.run("get", k, "-n", kubeai.NAMESPACE, "-o", "json").stdout)["items"]}


def side_by_side(r: dict) -> dict:
    """modelplane and KubeAI on the same scenarios: rows of (figure, modelplane, KubeAI); ratio modelplane / KubeAI."""
    p = r.get("peer") or {}
    rows = []

    def row(what, mine, theirs, unit=""):
        ratio = round(mine / theirs, 2) if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)) \
            and theirs else None
        rows.append({"figure": what, "modelplane": mine, "kubeai": theirs, "ratio": ratio, "unit": unit})

    mine_sizes, their_sizes = sorted(r["latency"], key=int), sorted(p.get("latency", {}), key=int)
    for i, size in enumerate(mine_sizes):
        theirs = p["latency"][their_sizes[i]] if i < len(their_sizes) else {}
        present = size + (f" / {their_sizes[i]}" if i < len(their_sizes) and their_sizes[i] != size else "")
        for key, label in (("first_child", "apply -> first child (modelplane: Deployment; KubeAI: Pod)"),
                           ("running", "apply -> pod Running"),
                           ("ready", "apply -> Model ready (modelplane: status Ready; KubeAI: a ready replica)")):
            mine = r["latency"][size].get(key)
            if not mine:
                continue
            for stat in ("median_ms", "p99_ms"):
                row(f"{label}, {present} present, {stat[:-3]}", mine[stat], (theirs.get(key) or {}).get(stat), "ms")
    b, pb = r.get("burst", {}), p.get("burst", {})
    if b:
        n = b["models"]
        row(f"burst of {n}: all pods Running", b.get("all_running_s"), pb.get("all_running_s"), "s")
        row(f"burst of {n}: all Models ready", b["all_ready_s"], pb.get("all_ready_s"), "s")
        row(f"burst of {n}: CPU seconds per Model", b.get("operator_cpu_s_per_model"),
            pb.get("operator_cpu_s_per_model"), "s")
        row(f"burst of {n}: peak memory", b["operator_peak_rss_mb"], pb.get("operator_peak_rss_mb"), "MB")
        row(f"burst of {n}: API reads per Model", b["operator_reads_per_model"], pb.get("operator_reads_per_model"))
        row(f"burst of {n}: API writes per Model", b["operator_writes_per_model"],
            pb.get("operator_writes_per_model"))
    x = r.get("restart", {})
    for lease, pr in (p.get("restart") or {}).items():
        if not x:
            break
        label = f"restart with {x['models']} / {pr['models']} ({'KubeAI default lease 15 s' if lease == 'default' else 'KubeAI short lease 1 s'})"
        row(f"{label}: all verified (KubeAI: leader + first reconcile of every Model)", x["verified_s"],
            pr["verified_s"], "s")
        if lease == "default" or len(p["restart"]) == 1:
            row(f"{label}: KubeAI leader elected after", None, pr["leader_s"], "s")
        row(f"{label}: objects written", x["objects_written"], pr["objects_written"])
        row(f"{label}: API writes (KubeAI: without its {pr['lease_writes']} lease renewals)",
            x["operator_requests"]["writes"], pr["writes_without_leases"])
        row(f"{label}: API reads", x["operator_requests"]["reads"], pr["operator_requests"]["reads"])
        row(f"{label}: memory after", x["operator_rss_mb"], pr["operator_rss_mb"], "MB")
    return {"peer": p.get("name", "KubeAI"), "status": p.get("status", "not run"), "rows": rows}


def unrelated(kube: Kube, op: Operator, work: Path, audit: Audit, count: int) -> tuple[Operator, dict]:
    """`count` Pods and `count` ConfigMaps of no concern to the operator, over 20 namespaces: its memory before and
    after they appear, and after a restart (its initial lists are where objects it selected by mistake would cost
    most), and the operator's list and watch requests for pods and ConfigMaps from the restart on."""
    models = len(kube.run("get", "models", "-A", "-o", "name").stdout.split())
    rss_before = rss_mb(op.proc.pid)
    make_namespaces(kube, UNRELATED_NAMESPACES)
    t0 = time.monotonic()
    create_many(kube, [unrelated_pod(i) for i in range(count)] + [unrelated_configmap(i) for i in range(count)],
                chunk=250, threads=4)
    created = time.monotonic() - t0
    time.sleep(10)
    rss_created = rss_mb(op.proc.pid)
    op.stop()
    mark = audit.mark()
    op = Operator(kube, work, name="operator-unrelated", verbose=False, webhook_port=op.webhook_port).start()
    verified = wait_reconciled(op, models)
    time.sleep(2)
    rss_restarted, peak_restarted = rss_mb(op.proc.pid), round(proc_stats(op.proc.pid)[1], 1)
    # Only completed requests reach the audit log (and watches complete when they end): stop the operator so that
    # its watches of pods and ConfigMaps are there too.
    op.stop()
    time.sleep(2)
    reads = audit.reads_of(mark, {"pods", "configmaps"})
    return op, {"models": models, "unrelated_pods": count, "unrelated_configmaps": count,
                "namespaces": len(UNRELATED_NAMESPACES), "create_s": round(created, 1),
                "rss_mb_before": rss_before, "rss_mb_after_create": rss_created,
                "rss_mb_after_restart": rss_restarted, "peak_rss_mb_after_restart": peak_restarted,
                "restart_verified_s": round(verified, 1),
                "pod_and_configmap_watch_uris": list(reads["requests"]),
                "pod_and_configmap_requests": reads["requests"],
                "pod_and_configmap_requests_without_label_selector": reads["without_label_selector"]}


def propagation(kube: Kube, w: Watcher, count: int) -> dict:
    target = "shared"
    kube.apply(model(target))
    create_many(kube, [agent(f"a{i:03d}", target) for i in range(count)])
    configmaps = [configmap_name(f"a{i:03d}") for i in range(count)]
    w.wait(lambda: all(w.served.get(c) == {target} for c in configmaps))
    timings = []
    for round_ in range(3):
        served = f"{target}-v{round_ + 1}"
        start = time.monotonic()
        kube.run("patch", "model", target, "-n", NS, "--type=merge", "-p",
                 json.dumps({"spec": {"servedModelName": served}}))
        w.wait(lambda: all(w.served.get(c) == {served} for c in configmaps))
        timings.append(time.monotonic() - start)
    return {"agents": count, "change": "spec.servedModelName", "all_configmaps_s": summary(timings)}


def markdown(r: dict) -> str:
    lines = [f"# modelplane benchmark ({r['machine']['cores']} cores, Kubernetes {r['versions'].get('K8S_VERSION')})",
             "", "| scenario | figure |", "| --- | --- |"]
    for size, lat in r["latency"].items():
        for what in ("children", "ready"):
            s = lat[what]
            lines.append(f"| apply -> {what}, {size} Models present | median {s['median_ms']} ms, p90 {s['p90_ms']} ms, "
                         f"p99 {s['p99_ms']} ms, range {s['min_ms']}-{s['max_ms']} ms (n={s['n']}) |")
    b = r.get("burst", {})
    if b:
        lines.append(f"| burst of {b['models']} | all Ready in {b['all_ready_s']} s (apply {b['apply_s']} s); operator "
                     f"{b['operator_cpu_s']} CPU s, peak {b['operator_peak_rss_mb']} MB; per Model "
                     f"{b['operator_writes_per_model']} writes, {b['operator_reads_per_model']} reads |")
    s = r.get("steady", {})
    if s:
        lines.append(f"| steady, {s['models']} Ready, {s['seconds']} s | {s['objects_written']} objects written, "
                     f"operator requests {s['operator_requests']}; operator {s['operator_cpu_percent_of_core']}% "
                     f"of a core, {s['operator_rss_mb']} MB |")
    x = r.get("restart", {})
    if x:
        lines.append(f"| restart with {x['models']} | all verified in {x['verified_s']} s; "
                     f"{x['objects_written']} objects written, operator requests {x['operator_requests']}; "
                     f"operator {x['operator_rss_mb']} MB after it (peak {x['operator_peak_rss_mb']} MB) |")
    a = r.get("agents", {})
    if a:
        t = a["all_configmaps_s"]
        lines.append(f"| {a['change']} change -> all {a['agents']} Agent ConfigMaps | median {t['median_ms']} ms, "
                     f"range {t['min_ms']}-{t['max_ms']} ms (n={t['n']}) |")
    d = r.get("admission", {})
    if d:
        for what, label in (("idle_ms", f"idle, {d['idle_models']} Models"),
                            ("during_burst_ms", f"during the burst of {d.get('burst_models')}")):
            t = d.get(what)
            if t:
                lines.append(f"| pod admission (injected), {label} | median {t['median_ms']} ms, p90 {t['p90_ms']} ms, "
                             f"p99 {t['p99_ms']} ms, range {t['min_ms']}-{t['max_ms']} ms (n={t['n']}) |")
        if "not_injected" in d:
            lines.append(f"| pod admission: pods not injected / failed creates | {d['not_injected']} / {d['errors']} |")
    u = r.get("unrelated", {})
    if u:
        lines.append(f"| {u['unrelated_pods']} unrelated Pods and {u['unrelated_configmaps']} ConfigMaps "
                     f"({u['namespaces']} namespaces), {u['models']} Models | created in {u['create_s']} s; operator "
                     f"{u['rss_mb_before']} MB before, {u['rss_mb_after_create']} MB after; restarted: all verified in "
                     f"{u['restart_verified_s']} s, {u['rss_mb_after_restart']} MB (peak "
                     f"{u['peak_rss_mb_after_restart']} MB) |")
        lines.append(f"| operator's pod and ConfigMap lists and watches from the restart on | "
                     f"{'; '.join(f'{k} (x{n})' for k, n in u['pod_and_configmap_requests'].items()) or 'none'}; "
                     f"{u['pod_and_configmap_requests_without_label_selector']} without a label selector |")
    sbs = r.get("side_by_side")
    if sbs:
        lines += ["", f"## KubeAI side by side ({sbs['status']})", ""]
        peer = r.get("peer", {})
        if peer.get("status") == "not built":
            lines.append(f"KubeAI not built: {peer.get('reason')}")
        else:
            lines.append(f"KubeAI {peer.get('version')} in namespace {peer.get('namespace')}, measured after modelplane "
                         "(its operator stopped); first child: modelplane's Deployment, KubeAI's Pod. Lease settings: "
                         + "; ".join(f"{k}: {v}" for k, v in peer.get("leases", {}).items()) + ".")
            lines += ["", "| figure | modelplane | KubeAI | ratio (modelplane / KubeAI) |", "| --- | --- | --- | --- |"]
            fmt = lambda v, unit: "-" if v is None else f"{v} {unit}".strip()  # noqa: E731
            for row in sbs["rows"]:
                lines.append(f"| {row['figure']} | {fmt(row['modelplane'], row['unit'])} | "
                             f"{fmt(row['kubeai'], row['unit'])} | {'-' if row['ratio'] is None else row['ratio']} |")
            pb = peer.get("burst") or {}
            if pb and not pb.get("complete"):
                lines.append(f"\nKubeAI's burst incomplete: {pb['pods_created']} pods created, {pb['pods_running']} "
                             f"Running after {pb['waited_s']} s.")
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(r["latency"], key=int)
    if not sizes:  # --only without latency
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for what, style in (("children", "o-"), ("ready", "s--")):
        for stat in ("median_ms", "p99_ms"):
            ax.plot([int(s) for s in sizes], [r["latency"][s][what][stat] for s in sizes], style,
                    label=f"modelplane, apply -> {what}, {stat[:-3]}")
    peer = r.get("peer") or {}
    theirs = sorted(peer.get("latency") or {}, key=int)
    for what, style in (("first_child", "^-"), ("running", "v--")):
        for stat in ("median_ms", "p99_ms"):
            if theirs:
                ax.plot([int(s) for s in theirs], [peer["latency"][s][what][stat] for s in theirs], style,
                        color="tab:red" if what == "first_child" else "tab:purple", alpha=1 if stat == "median_ms"
                        else 0.5, label=f"KubeAI, apply -> {'Pod' if what == 'first_child' else 'pod Running'}, "
                                        f"{stat[:-3]}")
    ax.set_xscale("log")
    ax.set_xlabel("Models already present")
    ax.set_ylabel("latency (ms)")
    title = f"modelplane and KubeAI {peer.get('version')}" if theirs else \
        f"modelplane (KubeAI: {peer.get('status', 'not run')})"
    ax.set_title(f"{title[:70]}, {r['machine']['cores']} cores", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without finalizing: a daemon thread (a watch, an HTTP pool) caught mid-call while the interpreter tears
    # down can abort the process (SIGABRT) after every figure was written, which read as a failed run.
    os._exit(code)
