"""Load through a routed Model on the real node: requests/s and time to first token (p50/p99), through its router
(cache_aware) and through its plain `<name>-vllm` Service, in one run, on the same two replicas of the tiny model.
A benchmark, not a test: figures go to bench/results/routing-load.json and .md.

    python bench/routing_load.py [--conversations 8] [--turns 6] [--rounds 2] [--out DIR]

Agent-like load: each conversation resends its whole, growing history every turn, conversations side by side (one
thread each). The operator runs from its chart and image, vLLM and the router from theirs (make images), the client
in a pod of the agents image (bench/routing_load_client.py), as tests/node does. Order alternates between rounds
(router first, then Service first) so that neither path always meets a warmer cache."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "hack"), str(REPO / "tests")]

from harness import Kube  # noqa: E402
from localcluster import Cluster  # noqa: E402
from localvllm import make_weights_volume  # noqa: E402

NS, RELEASE, OPERATOR_NS = "bench-routing", "modelplane", "modelplane-system"


def helm(kube: Kube, *args: str) -> None:
    subprocess.run([str(Path(kube.kubectl_bin).parent / "helm"), *args], check=True, env=kube.env,
                   capture_output=True, timeout=600)


def model() -> dict:
    return {"apiVersion": "modelplane.dev/v1alpha1", "kind": "Model", "metadata": {"name": "tiny", "namespace": NS},
            "spec": {"source": "pvc://weights/tiny", "gpus": 0, "replicas": 2,
                     "engineArgs": {"maxModelLen": 1024, "enforceEager": True},
                     "resources": {"requests": {"cpu": "500m"}}, "routing": {}}}


def run_client(kube: Kube, name: str, env: dict) -> dict:
    client = (REPO / "bench" / "routing_load_client.py").read_text()
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "client", "image": "modelplane-agent:0.1.0", "command": ["python", "-c", client],
                    "env": [{"name": k, "value": str(v)} for k, v in env.items()]}]}})
    end = time.monotonic() + 1800
    while time.monotonic() < end:
        phase = ((kube.get("pod", name, NS) or {}).get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            logs = kube.run("logs", name, "-n", NS).stdout
            line = next((ln for ln in logs.splitlines() if ln.startswith("RESULT ")), None)
            if not line:
                raise RuntimeError(logs[-3000:])
            return json.loads(line[len("RESULT "):])
        time.sleep(3)
    raise RuntimeError(f"{name} did not finish")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else 0.0


def summary(runs: list[dict]) -> dict:
    ttft = [t for r in runs for t in r["ttft_s"]]
    seconds = sum(r["seconds"] for r in runs)
    return {"requests": len(ttft), "failed": sum(r["failed"] for r in runs),
            "requests_per_s": round(len(ttft) / seconds, 2) if seconds else 0.0,
            "ttft_ms": {"p50": pct(ttft, 0.5), "p99": pct(ttft, 0.99),
                        "mean": round(statistics.fmean(ttft) * 1000, 1) if ttft else 0.0},
            "prefix_cache_hit_rate": round(sum(r["hits"] for r in runs) / max(1.0, sum(r["queries"] for r in runs)), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conversations", type=int, default=8)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="routing-load-"))
    cluster = Cluster(work / "cluster", real_node=True)
    cluster.up(timeout=600)
    try:
        if not cluster.node:
            raise SystemExit(f"no real node here: {cluster.no_node_reason}")
        kube = Kube(cluster)
        helm(kube, "install", RELEASE, str(REPO / "charts" / "modelplane"), "--namespace", OPERATOR_NS,
             "--create-namespace", "--wait", "--timeout", "5m")
        kube.run("create", "namespace", NS)
        manifest = (REPO / "hack" / "demo-weights.yaml").read_text()
        kube.apply(manifest.replace("${WEIGHTS}", str(make_weights_volume())).replace("namespace: demo",
                                                                                      f"namespace: {NS}"))
        kube.apply(model())
        kube.wait_for(lambda: ((kube.get("model", "tiny", NS) or {}).get("status") or {}).get("routing", {}).get(
            "routedReplicas") == 2, timeout=900, interval=3, what="2 replicas behind the router")
        pods = json.loads(kube.run("get", "pods", "-n", NS, "-l", "modelplane.dev/model=tiny", "-o", "json").stdout)
        ips = ",".join(p["status"]["podIP"] for p in pods["items"])
        paths = {"router": f"http://tiny.{NS}.svc.cluster.local:8000/v1",
                 "service": f"http://tiny-vllm.{NS}.svc.cluster.local:8000/v1"}
        runs: dict[str, list[dict]] = {"router": [], "service": []}
        for r in range(args.rounds):
            for path in (("router", "service") if r % 2 == 0 else ("service", "router")):
                runs[path].append(run_client(kube, f"load-{r}-{path}", {
                    "BASE_URL": paths[path], "MODEL": "tiny", "SERVER_PODS": ips, "LABEL": f"{path}{r}",
                    "CONVERSATIONS": args.conversations, "TURNS": args.turns}))
        results = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
                   "conversations": args.conversations, "turns": args.turns, "rounds": args.rounds,
                   "router": summary(runs["router"]), "service": summary(runs["service"]), "raw": runs}
    finally:
        cluster.down()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing-load.json").write_text(json.dumps(results, indent=2))
    lines = ["| path | requests | failed | requests/s | TTFT p50 ms | TTFT p99 ms | prefix cache hit rate |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for path in ("router", "service"):
        s = results[path]
        lines.append(f"| {path} | {s['requests']} | {s['failed']} | {s['requests_per_s']} | {s['ttft_ms']['p50']} | "
                     f"{s['ttft_ms']['p99']} | {s['prefix_cache_hit_rate']} |")
    (out / "routing-load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
