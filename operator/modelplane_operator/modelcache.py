"""The Models as the admission webhook sees them: a list-then-watch cache of its own, in every replica.

kopf's indexes are empty until kopf has listed everything, and frozen in a standby replica (peering pauses its
watches), while the admission server answers from the start in every replica. So the webhook reads this cache
instead, as controller-runtime webhooks read their informers: every replica serves admissions, each only once its
cache is synced (its readiness probe says so, and the webhook Service routes to ready replicas only).
"""

from __future__ import annotations

import logging
import threading
import time

from kubernetes.client import ApiException

from . import kube
from .config import GROUP, VERSION

log = logging.getLogger("modelplane")
WATCH_SECONDS = 300  # the server ends each watch after this; it is resumed from the last resourceVersion


def _slim(model: dict) -> dict:
    """What injection reads of a Model: identity, spec and phase (not managedFields or the whole status)."""
    meta = model["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Model",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation") if k in meta},
            "spec": model.get("spec") or {}, "status": {"phase": (model.get("status") or {}).get("phase")}}


class ModelCache:
    def __init__(self, namespaces: list[str] | None = None):
        self.namespaces = namespaces or []  # empty: the whole cluster
        self.synced = threading.Event()
        self._models: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listed: set[str] = set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-cache", daemon=True)
            self._thread.start()

    def lookup(self, key: tuple[str, str]) -> dict | None:
        with self._lock:
            return self._models.get(key)

    def models(self) -> list[dict]:
        with self._lock:
            return list(self._models.values())

    def replace(self, path: str, models: list[dict]) -> None:
        """The result of listing `path`: what it held before is forgotten."""
        with self._lock:
            self._models = {k: v for k, v in self._models.items() if self._path_of(k[0]) != path}
            self._models.update({(m["metadata"]["namespace"], m["metadata"]["name"]): _slim(m) for m in models})
            self._listed.add(path)
            if self._listed >= set(self._paths()):
                self.synced.set()

    def event(self, type_: str, model: dict) -> None:
        key = (model["metadata"]["namespace"], model["metadata"]["name"])
        with self._lock:
            if type_ == "DELETED":
                self._models.pop(key, None)
            else:
                self._models[key] = _slim(model)

    def _paths(self) -> list[str]:
        return [self._path_of(ns) for ns in self.namespaces] or [self._path_of(None)]

    def _path_of(self, namespace: str | None) -> str:
        base = f"/apis/{GROUP}/{VERSION}"
        return f"{base}/namespaces/{namespace}/models" if self.namespaces else f"{base}/models"

    def _run(self) -> None:
        # One list-then-watch loop per path (one for the cluster, or one per watched namespace).
        for path in self._paths()[1:]:
            threading.Thread(target=self._follow, args=(path,), name="model-cache", daemon=True).start()
        self._follow(self._paths()[0])

    def _follow(self, path: str) -> None:
        while True:
            try:
                page = kube.request("GET", path)
                self.replace(path, page.get("items") or [])
                self._watch(path, page["metadata"]["resourceVersion"])
            except Exception as e:  # noqa: BLE001  the cache must outlive any API hiccup: list again
                log.warning("Model cache for admissions (%s): %s; listing again", path, e)
                time.sleep(2)

    def _watch(self, path: str, resource_version: str) -> None:
        """Follow `path` from `resource_version` until the server says it is too old (410), then return."""
        while True:
            for event in kube.watch(path, resource_version, WATCH_SECONDS):
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        return
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                resource_version = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.event(event["type"], obj)
