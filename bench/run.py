"""Benchmarks of the operator on the local control plane (issue 6, modelplane side; see bench/README.md).

    python bench/run.py [--models N] [--samples S] [--agents A] [--out bench/results]

Writes results.json, results.md and latency.png. Timings on a shared 2-core machine are noisy: medians and spreads
are reported, and benchmarks never fail a test run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import kubernetes
from kubernetes import watch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "hack"), str(REPO / "tests")]

from harness import Kube, Operator  # noqa: E402
from localcluster import BIG_NODE, NODES, Cluster  # noqa: E402
from modelplane_operator.agent import AGENT_LABEL, configmap_name  # noqa: E402
from modelplane_operator.agentconfig import INDEX_FILE  # noqa: E402
from modelplane_operator.config import GROUP, VERSION  # noqa: E402

NS = "bench"
OPERATOR_AGENTS = ("kopf/", "modelplane-operator")  # user agents of the operator's two API clients
READS, WRITES = {"get", "list", "watch"}, {"create", "update", "patch", "delete", "deletecollection"}


def model(name: str, **spec) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model", "metadata": {"name": name, "namespace": NS},
            "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 0,
                     "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}, **spec}}


def agent(name: str, model_name: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": name, "namespace": NS},
            "spec": {"image": "modelplane-agent:0.1.0", "models": [{"name": model_name, "default": True}],
                     "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}}


def create_many(kube: Kube, docs: list[dict]) -> None:
    for i in range(0, len(docs), 100):  # server-side apply in chunks: kubectl's client-side apply is the slow part
        kube.run("apply", "--server-side", "-f", "-",
                 input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs[i:i + 100]}))


class Watcher:
    """Watches the bench namespace and notes when each object was first seen and each Model first went Ready, in
    this process's monotonic clock: latencies without any polling overhead."""

    def __init__(self, kubeconfig: Path):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=config)
        self.client = kubernetes.client.ApiClient(config)
        self.client.user_agent = "modelplane-bench"
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
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

    def latency(self, name: str) -> tuple[float, float]:
        """Seconds from the create request to (Deployment and Service seen, Model Ready)."""
        start = time.monotonic()
        self.create_model(name)
        self.wait(lambda: ("Deployment", name) in self.seen and ("Service", name) in self.seen and name in self.ready)
        return max(self.seen[("Deployment", name)], self.seen[("Service", name)]) - start, self.ready[name] - start


class Audit:
    """The operator's own requests, read from the API server's audit log between two marks."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, offset: int) -> dict:
        counts = {"reads": 0, "writes": 0}
        with open(self.path, "rb") as f:
            f.seek(offset)
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if not str(e.get("userAgent", "")).startswith(OPERATOR_AGENTS):
                    continue
                verb = e.get("verb")
                kind = "reads" if verb in READS else "writes" if verb in WRITES else "other"
                counts[kind] = counts.get(kind, 0) + 1
                if kind == "writes":  # which writes: children, status, Events, kopf's own annotations
                    ref = e.get("objectRef") or {}
                    what = "/".join(filter(None, (ref.get("resource"), ref.get("subresource"))))
                    counts.setdefault("writes_by_resource", {})
                    counts["writes_by_resource"][what] = counts["writes_by_resource"].get(what, 0) + 1
        return counts


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
    return {"children": summary([c for c, _ in lat]), "ready": summary([r for _, r in lat])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1000, help="size of the burst and of the largest background")
    ap.add_argument("--samples", type=int, default=20, help="latency samples per background size")
    ap.add_argument("--agents", type=int, default=100, help="Agents referencing one Model (propagation)")
    ap.add_argument("--steady-seconds", type=int, default=60)
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)  # a fresh control plane each run, never the last run's etcd
    cluster = Cluster(work / "cluster", nodes=[*NODES, BIG_NODE], audit=True)
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
        # 1. latency with 1 and then 100 Models present (capped by the burst size for the smoke run)
        for size in sorted({1, min(100, args.models)}):
            names = [f"p{i:04d}" for i in range(w.models(), size)]
            create_many(kube, [model(n) for n in names])
            w.wait(lambda: all(n in w.ready for n in names))
            results["latency"][str(size)] = sample_latency(w, args.samples)
        # 2. burst
        names = [f"b{i:04d}" for i in range(args.models)]
        cpu0, _ = proc_stats(op.proc.pid)
        mark = audit.mark()
        t0 = time.monotonic()
        create_many(kube, [model(n) for n in names])
        applied = time.monotonic() - t0
        w.wait(lambda: all(n in w.ready for n in names))
        burst = time.monotonic() - t0
        cpu1, peak = proc_stats(op.proc.pid)
        requests = audit.since(mark)
        results["burst"] = {"models": len(names), "all_ready_s": round(burst, 1), "apply_s": round(applied, 1),
                            "operator_cpu_s": round(cpu1 - cpu0, 1), "operator_peak_rss_mb": round(peak, 1),
                            "operator_requests": requests,
                            "operator_writes_per_model": round(requests["writes"] / len(names), 2),
                            "operator_reads_per_model": round(requests["reads"] / len(names), 2)}
        # 3. steady state
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
                             "operator_rss_mb": round(_status_kb(op.proc.pid, "VmRSS") / 1024, 1)}
        # 1. latency with the burst's Models present
        present = w.models()
        results["latency"][str(present)] = sample_latency(w, args.samples)
        # 4. restart
        op.stop()
        before = versions(kube)
        mark = audit.mark()
        op = Operator(kube, work, name="operator-restarted", verbose=False).start()
        t0 = time.monotonic()
        total = len(before) // 3
        while op.metric("modelplane_reconciles_total") < total and time.monotonic() - t0 < 600:
            time.sleep(0.2)
        verified = time.monotonic() - t0
        time.sleep(2)  # anything the restart would write comes right after its reconcile
        results["restart"] = {"models": total, "verified_s": round(verified, 1),
                              "objects_written": sum(before[k] != v for k, v in versions(kube).items()),
                              "operator_requests": audit.since(mark)}
        # 5. Agent propagation: a Model's served name changes; every referencing Agent's ConfigMap follows
        if args.agents:
            results["agents"] = propagation(kube, w, args.agents)
    finally:
        if op:
            op.stop()
        cluster.down()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "latency.png")
    print(markdown(results))
    return 0


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
                     f"{x['objects_written']} objects written, operator requests {x['operator_requests']} |")
    a = r.get("agents", {})
    if a:
        t = a["all_configmaps_s"]
        lines.append(f"| {a['change']} change -> all {a['agents']} Agent ConfigMaps | median {t['median_ms']} ms, "
                     f"range {t['min_ms']}-{t['max_ms']} ms (n={t['n']}) |")
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(r["latency"], key=int)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for what, style in (("children", "o-"), ("ready", "s--")):
        for stat in ("median_ms", "p99_ms"):
            ax.plot([int(s) for s in sizes], [r["latency"][s][what][stat] for s in sizes], style,
                    label=f"modelplane, apply -> {what}, {stat[:-3]}")
    ax.set_xscale("log")
    ax.set_xlabel("Models already present")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"modelplane on {r['machine']['cores']} cores (KubeAI: not buildable here, see README)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
