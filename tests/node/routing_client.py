"""Run in a pod of the agents image by tests/node/test_node_routing.py: agent-like conversations (each turn resends the
whole, growing conversation), side by side, to a routed Model, through its router and through its plain <name>-vllm
Service. Which replica served each request, and the prefix cache's hits and queries, come from each vLLM pod's own
/metrics (read before and after each turn); the router's prefix decisions from its metrics port. Prints one JSON
line prefixed RESULT."""

from __future__ import annotations

import concurrent.futures
import json
import os
import urllib.error
import urllib.request

ROUTER, DIRECT = os.environ["ROUTER_URL"], os.environ["DIRECT_URL"]
PODS = os.environ["SERVER_PODS"].split(",")  # server pod IPs
KEY = os.environ["API_KEY"]
WORDS = ("kubernetes operator reconciles models into deployments services and pods while agents resend their "
         "growing conversations every turn so the replica holding the prefix answers fastest").split()


def post(base: str, body: dict, key: str | None = KEY) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(base + "/chat/completions", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode(errors="replace")[:300]}


def counters(ip: str) -> dict[str, float]:
    """vLLM's generated tokens and prefix cache hits and queries (in tokens) on one server pod."""
    text = urllib.request.urlopen(f"http://{ip}:8000/metrics", timeout=30).read().decode()
    out = {"generated": 0.0, "hits": 0.0, "queries": 0.0}
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        for key, metric in (("generated", "vllm:generation_tokens_total"), ("hits", "vllm:prefix_cache_hits_total"),
                            ("queries", "vllm:prefix_cache_queries_total")):
            if name == metric:
                out[key] += float(line.rsplit(" ", 1)[1])
    return out


def conversations(base: str, label: str, count: int, turns: int) -> dict:
    """`count` conversations at once, turn by turn, as agents run side by side. Conversation c's answers are exactly
    2**c tokens long (min_tokens = max_tokens), so each pod's generated tokens in a turn, a sum of distinct powers of
    two, say which conversations it served."""
    systems = [f"{label} conversation {c}: " + " ".join(WORDS[(c * 7 + i) % len(WORDS)] for i in range(120))
               for c in range(count)]
    histories = [[{"role": "system", "content": system}] for system in systems]
    placements = [[] for _ in range(count)]
    totals = {"hits": 0.0, "queries": 0.0}
    for t in range(turns):
        for c, messages in enumerate(histories):
            messages.append({"role": "user", "content": f"turn {t}: what next for conversation {c}?"})
        before = [counters(ip) for ip in PODS]
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            answers = list(pool.map(lambda c: post(base, {
                "model": os.environ["MODEL"], "messages": histories[c], "max_tokens": 2 ** c,
                "min_tokens": 2 ** c, "temperature": 0}), range(count)))
        after = [counters(ip) for ip in PODS]
        for c, (status, answer) in enumerate(answers):
            assert status == 200, (status, answer)
            histories[c].append({"role": "assistant", "content": answer["choices"][0]["message"]["content"] or "ok"})
        for pod, (b, a) in enumerate(zip(before, after)):
            served = int(a["generated"] - b["generated"])
            for c in range(count):
                if served & 2 ** c:
                    placements[c].append(pod)
        for key in totals:
            totals[key] += sum(a[key] - b[key] for b, a in zip(before, after))
    return {"placements": placements, **totals,
            "hit_rate": round(totals["hits"] / totals["queries"], 3) if totals["queries"] else 0.0}


def router_decisions(ip: str) -> dict[str, float]:
    """vllm-router's prefix routing outcomes (prefix_hit, prefix_miss, missing_tokens...) from its metrics port."""
    text = urllib.request.urlopen(f"http://{ip}:29000/metrics", timeout=30).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("vllm_router_prefix_routing_decisions_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = out.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def main() -> None:
    count, turns = int(os.environ.get("CONVERSATIONS", "4")), int(os.environ.get("TURNS", "4"))
    hello = {"model": os.environ["MODEL"], "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
    result = {
        "router": conversations(ROUTER, "routed", count, turns),
        "router_decisions": router_decisions(os.environ["ROUTER_POD"]),
        "direct": conversations(DIRECT, "direct", count, turns),
        # the key stays enforced through the router: vLLM checks the Authorization header the router passes on
        "no_key": post(ROUTER, hello, key=None)[0],
        "wrong_key": post(ROUTER, hello, key="wrong")[0],
        "with_key": post(ROUTER, hello)[0],
        # the router's admin endpoints are not served to clients (its gate answers 403)
        "add_worker": status_of(ROUTER.rsplit("/v1", 1)[0] + "/add_worker?url=http://127.0.0.1:9"),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
