"""Writing Model and Agent status: only when it changed, at once for what a person acts on, and routine progress
(a pod scheduled, a replica counted, the way up of a new Model) at most once per interval per owner, the last status
computed in the interval being the one written when it ends. Under load (5 or more owners written in the last
second, as in a burst of new Models) a new owner's first status waits longer (`first_wait`, 5 s), and so do the
phases of its way up (see handlers), while reaching Ready is written at once: a Model that is Pending, Loading and
Ready within those seconds costs one write. A person still sees a new Model's phase within 5 s, and never has to wait
for it when the operator is not busy."""

from __future__ import annotations

import collections
import concurrent.futures
import contextvars
import heapq
import logging
import math
import threading
import time
from typing import Callable

from . import metrics
from .status import status_changed

log = logging.getLogger("modelplane")
# write(owner, old, new): patch the status subresource and post the Events the change calls for
Write = Callable[[dict, dict, dict], None]


class StatusWriter:
    def __init__(self, interval: float = 1.0, busy_owners: int = 5, first_wait: float = 5.0):
        """`busy_owners`: owners written in the last `interval` from which the writer counts as busy (a burst of new
        Models; one Model at a time, however quick, is not). `first_wait`: how long a new owner's routine first status
        waits while busy (in a burst of 1000 on kwok, most Models are Ready within it)."""
        self.interval, self.busy_owners, self.first_wait = interval, busy_owners, first_wait
        self._recent: collections.deque[tuple[float, str]] = collections.deque()  # (time, uid) of recent writes
        # What this process last wrote, by owner uid. The watches lag behind our own writes; comparing with them
        # alone would repeat writes and Events. After a restart the watches (fresh from a list) are the truth.
        self._written: dict[str, dict] = {}
        self._next_write: dict[str, float] = {}  # uid -> when routine progress may be written again
        self._held: dict[str, tuple[dict, dict, Write]] = {}  # uid -> (owner, status, write) waiting for the interval
        # Held statuses come due on one clock thread (not a timer thread per owner: a burst holds a thousand) and are
        # written by a few threads. uid -> the context to write in (kopf keeps what posting Events needs there).
        self._due: list[tuple[float, str]] = []  # heap of (when, uid); a uid no longer in _scheduled is skipped
        self._scheduled: dict[str, contextvars.Context] = {}
        self._clock = threading.Condition()
        self._clock_thread: threading.Thread | None = None
        self._writers = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="status-release")
        self._locks: dict[str, threading.Lock] = {}

    def previous(self, owner: dict) -> dict:
        """The status last written for `owner` (by this process, else as the watches show it)."""
        return self._written.get(owner["metadata"]["uid"]) or owner.get("status") or {}

    def busy(self) -> bool:
        now = time.monotonic()
        while self._recent and self._recent[0][0] < now - self.interval:
            self._recent.popleft()
        return len({uid for _, uid in list(self._recent)}) >= self.busy_owners

    def publish(self, owner: dict, new: dict, write: Write, *, urgent: bool) -> None:
        """Write `new` if it differs from the previous status: now when `urgent` or when the owner's interval has
        passed, else when it ends (unless a newer status replaces it first, or the status returns to what was
        written)."""
        uid = owner["metadata"]["uid"]
        with self._locks.setdefault(uid, threading.Lock()):
            old = self.previous(owner)
            if not status_changed(old, new):
                self._held.pop(uid, None)
                return
            if not old and uid not in self._next_write and self.busy():
                self._next_write[uid] = time.monotonic() + self.first_wait  # a new owner, under load
            wait = self._next_write.get(uid, -math.inf) - time.monotonic()
            if urgent or wait <= 0:
                self._write(owner, old, new, write)
                return
            self._held[uid] = (owner, new, write)
            if uid not in self._scheduled:
                self._schedule(uid, wait, contextvars.copy_context())

    def forget(self, uid: str) -> None:
        """The owner is gone."""
        for table in (self._written, self._next_write, self._held, self._locks):
            table.pop(uid, None)
        self._scheduled.pop(uid, None)
        metrics.model_phase(uid, None)

    def _schedule(self, uid: str, wait: float, context: contextvars.Context) -> None:
        with self._clock:
            self._scheduled[uid] = context
            heapq.heappush(self._due, (time.monotonic() + wait, uid))
            if self._clock_thread is None:
                self._clock_thread = threading.Thread(target=self._tick, name="status-clock", daemon=True)
                self._clock_thread.start()
            self._clock.notify()

    def _tick(self) -> None:
        while True:
            with self._clock:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._clock.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, uid = heapq.heappop(self._due)
                context = self._scheduled.get(uid)
            if context is not None:
                self._writers.submit(context.run, self._release, uid)

    def _write(self, owner: dict, old: dict, new: dict, write: Write) -> None:
        write(owner, old, new)
        uid = owner["metadata"]["uid"]
        self._written[uid] = owner["status"] = new
        written_at = time.monotonic()
        self._next_write[uid] = written_at + self.interval
        self._recent.append((written_at, uid))
        self._held.pop(uid, None)  # whatever waited is older than this
        kind = owner.get("kind", "Model")
        metrics.STATUS_WRITES.labels(kind).inc()
        if kind == "Model":
            metrics.model_phase(uid, new.get("phase"))

    def _release(self, uid: str) -> None:
        # Under the owner's lock, as publish: a status written meanwhile (urgent) has emptied _held, and the held
        # one, older, must not overwrite it.
        with self._locks.setdefault(uid, threading.Lock()):
            self._scheduled.pop(uid, None)
            held = self._held.pop(uid, None)
            if held is None:
                return
            owner, new, write = held
            old = self.previous(owner)
            if not status_changed(old, new):
                return
            try:
                self._write(owner, old, new, write)
                return
            except Exception as e:  # noqa: BLE001  no handler will retry this: try again after another interval
                meta = owner["metadata"]
                log.warning("writing the status of %s %s/%s failed, retrying: %s", owner.get("kind", "Model"),
                            meta.get("namespace"), meta.get("name"), e)
                self._next_write[uid] = time.monotonic() + self.interval
        self.publish(owner, new, write, urgent=False)
