"""Children's events, from the operator's stores to their owners' reconciles: which owner an event concerns (pure),
and a runner that reconciles each owner once however many of its children changed meanwhile, a few at a time."""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import threading
from typing import Callable, Hashable

from .agent import NAMESPACE_CONFIGMAP
from .keys import AGENT_LABEL, MODEL_LABEL

log = logging.getLogger("modelplane")
MODEL_CHILDREN = {"Deployment", "Service", "NetworkPolicy", "ServiceAccount", "Role", "RoleBinding", "Pod",
                  "ConfigMap"}
AGENT_CHILDREN = {"Deployment", "ConfigMap"}
CHILD_KINDS = MODEL_CHILDREN | AGENT_CHILDREN  # the stores whose events go to owners_of (some kinds are both's)
Owner = tuple[str, str, str]  # ("Model" | "Agent" | "Namespace", namespace, name)


def owners_of(obj: dict) -> list[Owner]:
    """Pure: whose reconcile an event about `obj` (as the stores select them) calls for. A Model's child or server
    pod: its Model; an Agent's Deployment or ConfigMap: its Agent; a namespace's injection ConfigMap: its namespace
    (rebuilt if edited or deleted by hand)."""
    kind, meta = obj.get("kind"), obj["metadata"]
    labels, namespace = meta.get("labels") or {}, meta.get("namespace")
    owners = []
    if kind == "ConfigMap" and meta["name"] == NAMESPACE_CONFIGMAP:
        owners.append(("Namespace", namespace, namespace))
    if kind in MODEL_CHILDREN and MODEL_LABEL in labels:
        owners.append(("Model", namespace, labels[MODEL_LABEL]))
    if kind in AGENT_CHILDREN and AGENT_LABEL in labels:
        owners.append(("Agent", namespace, labels[AGENT_LABEL]))
    return owners


class OwnerRunner:
    """handle(owner) on a few threads: an owner marked while it waits runs once, and one marked while it runs runs
    again after (never two at once). Each run gets a copy of `context` (kopf keeps what posting Events needs there)."""

    def __init__(self, handle: Callable[[Hashable], None], workers: int = 4):
        self.handle, self.context = handle, contextvars.copy_context()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="child-events")
        self._lock = threading.Lock()
        self._queued: set = set()
        self._running: set = set()
        self._again: set = set()

    def mark(self, owner: Hashable) -> None:
        with self._lock:
            if owner in self._running:
                self._again.add(owner)
                return
            if owner in self._queued:
                return
            self._queued.add(owner)
        self._pool.submit(self._run, owner)

    def idle(self) -> bool:
        with self._lock:
            return not (self._queued or self._running)

    def _run(self, owner: Hashable) -> None:
        with self._lock:
            self._queued.discard(owner)
            self._running.add(owner)
        try:
            self.context.copy().run(self.handle, owner)
        except Exception:  # noqa: BLE001  logged; the owner's next event (or retry) tries again
            log.exception("reconciling %r after a child's event failed", owner)
        finally:
            with self._lock:
                self._running.discard(owner)
                again = owner in self._again
                self._again.discard(owner)
        if again:
            self.mark(owner)
