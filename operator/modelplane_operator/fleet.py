"""Operator upgrades roll the fleet a few Models at a time, not all at once.

A new operator version may render a Model differently although its spec did not change (a new default image, flag or
probe): applying that everywhere on start would restart every model server of the cluster at once, on GPUs that take
minutes to load. Each Deployment carries a hash of what the operator rendered for it; when the Model's generation
is the one it was rendered from but the hash differs, the operator itself changed: that update waits for a slot
(at most `limit` such rollouts at a time; 0: only on the Model's next spec change). A spec change, or drift someone
else made to a Deployment, is applied at once as always.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading

from .keys import GENERATION_ANNOTATION, TEMPLATE_HASH_ANNOTATION


def stamp(deployment: dict) -> dict:
    """`deployment` with the hash of its rendered spec in an annotation (pure)."""
    digest = hashlib.sha256(json.dumps(deployment["spec"], sort_keys=True).encode()).hexdigest()[:16]
    annotations = {**(deployment["metadata"].get("annotations") or {}), TEMPLATE_HASH_ANNOTATION: digest}
    return {**deployment, "metadata": {**deployment["metadata"], "annotations": annotations}}


def operator_changed(actual: dict | None, desired: dict) -> bool:
    """True when `actual` was rendered from the same Model generation as `desired` but by another rendering: the
    difference comes from the operator, not from the Model (pure)."""
    if actual is None:
        return False
    have = (actual["metadata"].get("annotations") or {})
    want = desired["metadata"]["annotations"]
    return (have.get(GENERATION_ANNOTATION) == want[GENERATION_ANNOTATION]
            and have.get(TEMPLATE_HASH_ANNOTATION) != want[TEMPLATE_HASH_ANNOTATION])


class RolloutSlots:
    """At most `limit` Models rolling because the operator changed; the others wait in line, in arrival order."""

    def __init__(self, limit: int):
        self.limit = limit
        self._rolling: set[str] = set()
        self._waiting: collections.OrderedDict[str, tuple] = collections.OrderedDict()  # uid -> Model key
        self._lock = threading.Lock()

    def admit(self, uid: str, key: tuple) -> bool:
        """True if the Model `uid` may roll now; else it waits in line (and `release` names it when its turn
        comes)."""
        with self._lock:
            if uid in self._rolling:
                return True
            if len(self._rolling) < self.limit and (not self._waiting or next(iter(self._waiting)) == uid):
                self._waiting.pop(uid, None)
                self._rolling.add(uid)
                return True
            self._waiting.setdefault(uid, key)
            return False

    def waiting(self, uid: str) -> int:
        """How many Models wait ahead of `uid`, counting itself (0: not waiting)."""
        with self._lock:
            order = list(self._waiting)
            return order.index(uid) + 1 if uid in self._waiting else 0

    def leave_line(self, uid: str) -> None:
        with self._lock:
            self._waiting.pop(uid, None)

    def release(self, uid: str) -> list[tuple]:
        """`uid` finished rolling (or is gone): the keys of Models that may take the freed slots, to reconcile."""
        with self._lock:
            self._waiting.pop(uid, None)
            if uid not in self._rolling:
                return []
            self._rolling.discard(uid)
            free = self.limit - len(self._rolling)
            return list(self._waiting.values())[:max(0, free)]


def settled(status: dict) -> bool:
    """The rollout is over, one way or another (complete, past its deadline, refused): its slot is free again, so
    that one stuck Model never holds up the fleet."""
    progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {})
    return progressing.get("status") == "False"


def waiting_status(status: dict, position: int, limit: int) -> dict:
    """`status` saying that the Model waits for a slot to roll out the operator's new rendering (pure)."""
    why = (f"the operator's rendering changed (an upgrade); it rolls out {limit} Model(s) at a time and this one "
           f"is number {position} in line" if limit else
           "the operator's rendering changed (an upgrade); it rolls out on the Model's next spec change")
    conditions = [({**c, "status": "False", "reason": "UpgradeWaiting", "message": f"{why} (a spec change rolls it "
                   "at once)"} if c.get("type") == "Progressing" else c) for c in status.get("conditions") or []]
    return {**status, "conditions": conditions}
