"""A set of pending items worked through by one background thread: an item marked again while it waits is handled
once, so a burst of events about the same thing costs one piece of work, done off the threads that marked it."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Hashable, Iterable

log = logging.getLogger("modelplane")


class Worklist:
    def __init__(self, handle: Callable[[Hashable], None], name: str, settle: float = 0.2, retry: float = 5.0):
        """handle(item) does the work; one that raises is tried again `retry` seconds later. Each round waits
        `settle` seconds after the first mark, so the marks of one burst land in the same round."""
        self.handle, self.name, self.settle, self.retry = handle, name, settle, retry
        self._pending: set = set()
        self._due: dict = {}  # item -> monotonic time before which a failed item is not tried again
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self.rounds = 0  # how many times the pending set was taken (a burst should take few)

    def mark(self, items: Iterable[Hashable]) -> None:
        with self._cond:
            self._pending.update(items)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def idle(self) -> bool:
        """Nothing pending and nothing being handled."""
        with self._cond:
            return not self._pending and not self._busy

    def _take(self) -> list:
        """Wait for items that are due (failed ones wait their retry), let the burst settle, take them all."""
        with self._cond:
            while True:
                now = time.monotonic()
                if any(self._due.get(i, 0) <= now for i in self._pending):
                    break
                waits = [self._due[i] - now for i in self._pending]
                self._cond.wait(min(waits) if waits else None)
        time.sleep(self.settle)
        with self._cond:
            now = time.monotonic()
            ready = [i for i in self._pending if self._due.get(i, 0) <= now]
            self._pending.difference_update(ready)
            self._busy = True
            self.rounds += 1
            return ready

    def _run(self) -> None:
        while True:
            for item in self._take():
                try:
                    self.handle(item)
                    failed = False
                except Exception as e:  # noqa: BLE001 - logged and tried again; the thread must live on
                    log.warning("%s: %r failed (%s); trying again in %ss", self.name, item, e, self.retry)
                    failed = True
                with self._cond:
                    if failed:
                        self._due[item] = time.monotonic() + self.retry
                        self._pending.add(item)
                    else:
                        self._due.pop(item, None)
            with self._cond:
                self._busy = False
