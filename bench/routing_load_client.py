"""Run in a pod of the agents image by bench/routing_load.py: CONVERSATIONS agent-like conversations side by side
(each turn resends the whole history), streamed, against BASE_URL; the time to first token of every request, and
the prefix cache's hits and queries summed over SERVER_PODS (their /metrics, before and after). Prints one JSON line
prefixed RESULT."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
import urllib.request

BASE, MODEL, LABEL = os.environ["BASE_URL"], os.environ["MODEL"], os.environ.get("LABEL", "run")
PODS = os.environ["SERVER_PODS"].split(",")
WORDS = ("a platform team runs open models for agents on kubernetes and every agent turn resends the growing "
         "conversation so the replica that already holds its prefix answers without prefilling it again").split()


def cache_counters() -> tuple[float, float]:
    hits = queries = 0.0
    for ip in PODS:
        for line in urllib.request.urlopen(f"http://{ip}:8000/metrics", timeout=30).read().decode().splitlines():
            name = line.split("{")[0].split(" ")[0]
            if name == "vllm:prefix_cache_hits_total":
                hits += float(line.rsplit(" ", 1)[1])
            elif name == "vllm:prefix_cache_queries_total":
                queries += float(line.rsplit(" ", 1)[1])
    return hits, queries


def streamed(messages: list[dict]) -> tuple[float, str]:
    """(seconds to the first content token, the answer)."""
    body = {"model": MODEL, "messages": messages, "max_tokens": 12, "min_tokens": 12, "stream": True}
    request = urllib.request.Request(BASE + "/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    start, first, text = time.monotonic(), None, []
    with urllib.request.urlopen(request, timeout=300) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = (json.loads(line[6:]).get("choices") or [{}])[0].get("delta", {}).get("content")
            if delta:
                first = first or time.monotonic() - start
                text.append(delta)
    return (first if first is not None else time.monotonic() - start), "".join(text)


def conversation(c: int, turns: int) -> tuple[list[float], int]:
    messages = [{"role": "system", "content": f"{LABEL} conversation {c}: " +
                 " ".join(WORDS[(c * 5 + i) % len(WORDS)] for i in range(150))}]
    ttft, failed = [], 0
    for t in range(turns):
        messages.append({"role": "user", "content": f"turn {t} of conversation {c}: and then?"})
        try:
            seconds, answer = streamed(messages)
            ttft.append(seconds)
            messages.append({"role": "assistant", "content": answer or "ok"})
        except OSError:
            failed += 1
    return ttft, failed


def main() -> None:
    count, turns = int(os.environ["CONVERSATIONS"]), int(os.environ["TURNS"])
    hits0, queries0 = cache_counters()
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        results = list(pool.map(lambda c: conversation(c, turns), range(count)))
    seconds = time.monotonic() - start
    hits1, queries1 = cache_counters()
    print("RESULT " + json.dumps({"seconds": round(seconds, 2), "ttft_s": [t for r in results for t in r[0]],
                                  "failed": sum(r[1] for r in results), "hits": hits1 - hits0,
                                  "queries": queries1 - queries0}), flush=True)


if __name__ == "__main__":
    main()
