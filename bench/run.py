"""Benchmarks of the operator on the local control plane (issue 6, modelplane side; see bench/README.md).

    python bench/run.py [--models N] [--samples S] [--out bench/results]

Writes results.json and results.md. Timings on a shared 2-core machine are noisy: medians and spreads are reported,
and benchmarks never fail a test run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "hack"), str(REPO / "tests")]

from harness import Kube, Operator  # noqa: E402
from localcluster import BIG_NODE, NODES, Cluster  # noqa: E402

NS = "bench"


def model(name: str) -> dict:
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": name, "namespace": NS},
            "spec": {"source": "hf://Qwen/Qwen2.5-7B-Instruct", "gpus": 0,
                     "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}}


def create_many(kube: Kube, names: list[str]) -> None:
    for i in range(0, len(names), 100):  # server-side apply in chunks: kubectl's client-side apply is the slow part
        kube.run("apply", "--server-side", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [model(n) for n in names[i:i + 100]]}))


def listing(kube: Kube, kind: str) -> list[dict]:
    return json.loads(kube.run("get", kind, "-n", NS, "-o", "json").stdout)["items"]


def ready_count(kube: Kube) -> int:
    return sum((m.get("status") or {}).get("phase") == "Ready" for m in listing(kube, "models"))


def versions(kube: Kube) -> dict:
    """resourceVersion of every Model, Deployment and Service: unchanged means nobody wrote them."""
    return {f"{k}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for k in ("models", "deployments", "services") for o in listing(kube, k)}


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak resident MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    return cpu, hwm / 1024


def rss_mb(pid: int) -> float:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS")) / 1024


def one_latency(kube: Kube, name: str) -> tuple[float, float]:
    """Seconds from apply to (Deployment and Service exist, Model Ready)."""
    start = time.monotonic()
    kube.apply(model(name))
    children = None
    while True:
        if children is None and kube.get("deployment", name, NS) and kube.get("service", name, NS):
            children = time.monotonic() - start
        m = kube.get("model", name, NS)
        if children is not None and ((m or {}).get("status") or {}).get("phase") == "Ready":
            return children, time.monotonic() - start
        time.sleep(0.02)


def summary(values: list[float]) -> dict:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"median_ms": round(statistics.median(values) * 1000, 1), "p90_ms": round(pick(0.9) * 1000, 1),
            "p99_ms": round(pick(0.99) * 1000, 1), "n": len(values)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=1000, help="size of the burst and of the largest background")
    ap.add_argument("--samples", type=int, default=20, help="latency samples per background size")
    ap.add_argument("--steady-seconds", type=int, default=60)
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    cluster = Cluster(work / "cluster", nodes=[*NODES, BIG_NODE])
    cluster.up()
    kube = Kube(cluster)
    kube.install_crds(str(REPO / "crds"))
    kube.run("create", "namespace", NS)
    op = Operator(kube, work, verbose=False).start()
    results = {"machine": {"cores": os.cpu_count(), "python": platform.python_version()},
               "versions": dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines()
                                if "=" in line and not line.startswith("#")),
               "latency": {}}
    try:
        # 2. burst
        names = [f"b{i:04d}" for i in range(args.models)]
        cpu0, _ = proc_stats(op.proc.pid)
        t0 = time.monotonic()
        create_many(kube, names)
        applied = time.monotonic() - t0
        while ready_count(kube) < len(names):
            time.sleep(1)
        burst = time.monotonic() - t0
        cpu1, peak = proc_stats(op.proc.pid)
        results["burst"] = {"models": len(names), "all_ready_s": round(burst, 1), "apply_s": round(applied, 1),
                            "operator_cpu_s": round(cpu1 - cpu0, 1), "operator_peak_rss_mb": round(peak, 1)}
        # 3. steady state
        before = versions(kube)
        cpu0, _ = proc_stats(op.proc.pid)
        time.sleep(args.steady_seconds)
        cpu1, _ = proc_stats(op.proc.pid)
        after = versions(kube)
        results["steady"] = {"models": len(names), "seconds": args.steady_seconds,
                             "objects_written": sum(before[k] != after.get(k) for k in before),
                             "operator_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / args.steady_seconds, 2),
                             "operator_rss_mb": round(rss_mb(op.proc.pid), 1)}
        # 1. latency with the burst's Models present
        lat = [one_latency(kube, f"l{args.models}-{i}") for i in range(args.samples)]
        results["latency"][str(len(names))] = {"children": summary([c for c, _ in lat]),
                                               "ready": summary([r for _, r in lat])}
        # 4. restart
        op.stop()
        before = versions(kube)
        op = Operator(kube, work, name="operator-restarted", verbose=False).start()
        t0 = time.monotonic()
        verified = lambda: op.metric("modelplane_reconciles_total")  # noqa: E731
        total = len(before) // 3
        while verified() < total and time.monotonic() - t0 < 600:
            time.sleep(0.5)
        results["restart"] = {"models": total, "verified_s": round(time.monotonic() - t0, 1),
                              "objects_written": sum(before[k] != v for k, v in versions(kube).items())}
    finally:
        op.stop()
        cluster.down()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# modelplane benchmark ({r['machine']['cores']} cores, Kubernetes {r['versions'].get('K8S_VERSION')})",
             "", "| scenario | figure |", "| --- | --- |"]
    for size, lat in r["latency"].items():
        for what in ("children", "ready"):
            s = lat[what]
            lines.append(f"| apply -> {what}, {size} Models present | median {s['median_ms']} ms, p90 {s['p90_ms']} ms, "
                         f"p99 {s['p99_ms']} ms (n={s['n']}) |")
    b = r.get("burst", {})
    if b:
        lines.append(f"| burst of {b['models']} | all Ready in {b['all_ready_s']} s (apply {b['apply_s']} s); operator "
                     f"{b['operator_cpu_s']} CPU s, peak {b['operator_peak_rss_mb']} MB |")
    s = r.get("steady", {})
    if s:
        lines.append(f"| steady, {s['models']} Ready, {s['seconds']} s | {s['objects_written']} objects written; "
                     f"operator {s['operator_cpu_percent_of_core']}% of a core, {s['operator_rss_mb']} MB |")
    x = r.get("restart", {})
    if x:
        lines.append(f"| restart with {x['models']} | all verified in {x['verified_s']} s; "
                     f"{x['objects_written']} objects written |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
