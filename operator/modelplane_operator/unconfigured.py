"""Tells opted-in pods that lack model configuration they could have now: one Warning Event on each.

A pod admitted while the webhook did not answer (failurePolicy Ignore let it through), or before a Model it names
existed, keeps the env it was created with: only re-creating it configures it. Nothing here changes a pod; the
Event says what happened and what to do. Scans run in one background thread, at most one per MIN_INTERVAL, when the
active replica's handlers poke it (a Model appeared or changed), so a burst of Model events costs one scan.
"""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import quote, urlencode

from . import kube
from .inject import INJECT_LABEL, not_configured

log = logging.getLogger("modelplane")
MIN_INTERVAL = 10.0  # seconds between two scans
REASON = "NotConfigured"
REMEDY = "delete the pod (or `kubectl rollout restart` its Deployment) to create it with the configuration"


def _list(path: str, selector: str) -> list[dict]:
    return kube.request("GET", f"{path}?{urlencode({'labelSelector': selector})}").get("items") or []


def opted_in_pods(excluded_namespaces: set[str], watched: list[str]) -> list[dict]:
    """Pods the webhook is sent: labelled inject=true, or in a namespace labelled inject=enabled (and not opted
    out), outside the excluded namespaces."""
    if watched:
        pods = [p for ns in watched for p in _list(f"/api/v1/namespaces/{quote(ns)}/pods", f"{INJECT_LABEL}=true")]
        enabled = [n["metadata"]["name"] for n in _list("/api/v1/namespaces", f"{INJECT_LABEL}=enabled")
                   if n["metadata"]["name"] in watched]
    else:
        pods = _list("/api/v1/pods", f"{INJECT_LABEL}=true")
        enabled = [n["metadata"]["name"] for n in _list("/api/v1/namespaces", f"{INJECT_LABEL}=enabled")]
    for ns in enabled:
        pods += _list(f"/api/v1/namespaces/{quote(ns)}/pods", f"{INJECT_LABEL}!=false,{INJECT_LABEL}!=true")
    return [p for p in pods if p["metadata"]["namespace"] not in excluded_namespaces
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")]


class Reporter:
    def __init__(self, lookup, excluded_namespaces: set[str], watched: list[str]):
        self.lookup = lookup  # (namespace, name) -> Model or None
        self.excluded = excluded_namespaces
        self.watched = watched
        self._poked = threading.Event()
        self._reported: dict[str, str] = {}  # pod uid -> the reason reported
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="unconfigured-pods", daemon=True)
            self._thread.start()
        self._poked.set()

    def scan(self) -> int:
        """Post an Event on each opted-in pod that lacks configuration it could have now; returns how many."""
        posted = 0
        pods = opted_in_pods(self.excluded, self.watched)
        alive = {p["metadata"]["uid"] for p in pods}
        self._reported = {uid: r for uid, r in self._reported.items() if uid in alive}
        for pod in pods:
            reason = not_configured(pod, pod["metadata"]["namespace"], self.lookup)
            uid = pod["metadata"]["uid"]
            if reason is None or self._reported.get(uid) == reason:
                continue
            kube.post_event({**pod, "apiVersion": "v1", "kind": "Pod"}, "Warning", REASON,
                            f"modelplane: this pod is not configured: {reason}; {REMEDY}")
            self._reported[uid] = reason
            posted += 1
        return posted

    def _run(self) -> None:
        while True:
            self._poked.wait()
            time.sleep(MIN_INTERVAL / 2)  # let a burst of pokes (and the admissions behind them) settle
            self._poked.clear()
            try:
                posted = self.scan()
                if posted:
                    log.warning("%d opted-in pod(s) lack model configuration; an Event on each says why", posted)
            except Exception as e:  # noqa: BLE001  the next poke scans again
                log.warning("looking for unconfigured pods failed: %s", e)
            time.sleep(MIN_INTERVAL / 2)
