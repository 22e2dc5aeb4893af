"""Retries of a failing reconcile wait longer each time, one at a time per key, and stop once it succeeds."""

import threading
import time

from modelplane_operator.retries import Retries


def test_delays_grow_to_the_most_and_start_again_after_a_success():
    r = Retries(first=5, most=300)
    delays = [r.schedule("m", lambda: None) for _ in range(8)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300]
    assert r.waiting("m")
    r.clear("m")
    assert not r.waiting("m") and r.delay("m") == 5


def test_a_retry_runs_once_and_replaces_the_one_waiting():
    r, ran = Retries(first=0.05, most=1), []
    done = threading.Event()
    r.schedule("m", lambda: ran.append("first"))
    r.schedule("m", lambda: (ran.append("second"), done.set()))  # replaces the first, waits 0.1 s
    assert done.wait(2)
    time.sleep(0.2)
    assert ran == ["second"] and not r.waiting("m")
