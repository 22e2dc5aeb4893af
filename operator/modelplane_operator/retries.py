"""Reconciles tried again after a problem: per key, 5, 10, 20 ... up to 300 seconds later, until one succeeds.

kopf retries its change handlers by itself; Models are reconciled from event handlers (see handlers), which kopf
does not retry, so this keeps the same growing delay for them."""

from __future__ import annotations

import contextvars
import threading
from typing import Callable, Hashable


class Retries:
    def __init__(self, first: float, most: float):
        self.first, self.most = first, most
        self._tries: dict[Hashable, int] = {}
        self._timers: dict[Hashable, threading.Timer] = {}
        self._lock = threading.Lock()

    def delay(self, key: Hashable) -> float:
        """Seconds the next retry of `key` would wait."""
        return min(self.most, self.first * 2 ** self._tries.get(key, 0))

    def schedule(self, key: Hashable, retry: Callable[[], None]) -> float:
        """Run `retry` later (replacing a retry already waiting); returns the delay. It runs in a copy of the
        caller's context: kopf keeps there what posting Events needs."""
        with self._lock:
            wait = self.delay(key)
            self._tries[key] = self._tries.get(key, 0) + 1
            old = self._timers.pop(key, None)
            if old:
                old.cancel()
            timer = threading.Timer(wait, contextvars.copy_context().run, (self._fire, key, retry))
            self._timers[key] = timer
            timer.daemon = True
            timer.start()
            return wait

    def _fire(self, key: Hashable, retry: Callable[[], None]) -> None:
        with self._lock:
            if self._timers.get(key) is threading.current_thread():
                del self._timers[key]
        retry()

    def waiting(self, key: Hashable) -> bool:
        return key in self._timers

    def clear(self, key: Hashable) -> None:
        """`key` succeeded (or is gone): no retry waits, and the next problem starts from the first delay."""
        with self._lock:
            self._tries.pop(key, None)
            timer = self._timers.pop(key, None)
            if timer:
                timer.cancel()
