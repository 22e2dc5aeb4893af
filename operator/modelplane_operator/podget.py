"""GETs to the operator's own Models' server pods, side by side: the autoscaler's reads of /metrics and the adapter
timer's reads of each loader's report."""

from __future__ import annotations

import concurrent.futures
import logging
import urllib.request

TIMEOUT = 8.0  # a busy server answers late; shorter than the autoscaler's interval
AT_ONCE = 8  # pods asked at once
log = logging.getLogger("modelplane")


def serving(pods: list[dict]) -> list[dict]:
    """The ready server pods not on their way out (store entries): the ones whose load and adapters count."""
    return [p for p in pods if p["ready"] and not p["deleting"]]


def get_text(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.read().decode(errors="replace")
    except (OSError, ValueError) as e:  # a pod going away, or not serving yet: it is left out of this look
        log.debug("GET %s: %s", url, e)
        return None


def get_all(urls: list[str]) -> list[str | None]:
    """GET each URL, side by side (pods that a NetworkPolicy keeps silent each cost the whole timeout, not one
    after the other); None for each that did not answer."""
    with concurrent.futures.ThreadPoolExecutor(max(1, min(len(urls), AT_ONCE))) as pool:
        return list(pool.map(get_text, urls))
