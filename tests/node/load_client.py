"""Run in a pod of the agents image by tests/node/test_node_routing.py: load on a Model's endpoint in phases, light
(one request at a time) then heavy (many at once, more than the replicas run together, so requests queue), each
request's outcome counted. Phase N (from 1) lasts its seconds, or ends sooner once the file ENOUGH_FILE + N exists
(the test creates it with kubectl exec when it has seen what that load was for); each worker sends one request at
least. Prints one JSON line prefixed RESULT: per phase, requests answered and failed (with the first errors) and
the seconds it ran."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
import urllib.error
import urllib.request

BASE, MODEL, KEY = os.environ["BASE_URL"], os.environ["MODEL"], os.environ.get("API_KEY")
ENOUGH = os.environ.get("ENOUGH_FILE", "")


def ask(i: int, tokens: int) -> str | None:
    """None when answered, else why not. The answer is exactly `tokens` long (min_tokens = max_tokens)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"request {i}: tell me about operators"}],
            "max_tokens": tokens, "min_tokens": tokens}
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {KEY}"} if KEY else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(BASE + "/chat/completions", json.dumps(body).encode(),
                                                           headers), timeout=300) as response:
            json.loads(response.read())
            return None
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read()[:200]!r}"
    except OSError as e:
        return repr(e)


def phase(number: int, workers: int, seconds: float, tokens: int) -> dict:
    def enough() -> bool:
        return bool(ENOUGH) and os.path.exists(f"{ENOUGH}{number}")
    start = time.monotonic()
    end = start + seconds
    outcomes: list[str | None] = []

    def worker(w: int) -> None:
        i = 0
        while i == 0 or (time.monotonic() < end and not enough()):  # one request at least, even if ended at once
            outcomes.append(ask(w * 100000 + i, tokens))
            i += 1
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    failed = [o for o in outcomes if o]
    return {"workers": workers, "seconds": seconds, "ran_s": round(time.monotonic() - start, 1), "tokens": tokens,
            "answered": len(outcomes) - len(failed), "failed": len(failed), "errors": failed[:5]}


def main() -> None:
    # PHASES: workers x seconds x tokens per answer, comma-separated
    plan = [(int(w), float(s), int(t)) for w, s, t in (p.split("x") for p in os.environ["PHASES"].split(","))]
    print("RESULT " + json.dumps([phase(n, *p) for n, p in enumerate(plan, 1)]), flush=True)


if __name__ == "__main__":
    main()
