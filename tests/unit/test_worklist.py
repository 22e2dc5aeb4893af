"""Worklist: marks from many threads, each item handled once per round, failures tried again later."""

from __future__ import annotations

import threading
import time

from modelplane_operator.worklist import Worklist


def wait_idle(work: Worklist, timeout: float = 5) -> None:
    end = time.monotonic() + timeout
    while not work.idle():
        assert time.monotonic() < end, "worklist never went idle"
        time.sleep(0.01)


def test_a_burst_of_marks_is_handled_once_per_item():
    handled = []
    work = Worklist(handled.append, "test", settle=0.1)
    threads = [threading.Thread(target=lambda: [work.mark([f"ns-{i % 3}"]) for i in range(300)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_idle(work)
    assert set(handled) == {"ns-0", "ns-1", "ns-2"}
    assert len(handled) <= 2 * 3 and work.rounds <= 2  # one round, two if the marks straddled one: never 1200


def test_a_failed_item_is_tried_again_and_others_go_on():
    calls = []

    def handle(item):
        calls.append(item)
        if item == "bad" and calls.count("bad") == 1:
            raise RuntimeError("API server said 500")

    work = Worklist(handle, "test", settle=0.01, retry=0.2)
    work.mark(["bad", "good"])
    time.sleep(0.1)
    assert "good" in calls and calls.count("bad") == 1
    wait_idle(work)
    assert calls.count("bad") == 2 and calls.count("good") == 1


def test_marks_during_handling_get_another_round():
    seen = []
    gate = threading.Event()

    def handle(item):
        seen.append(item)
        if item == "first":
            gate.wait(2)

    work = Worklist(handle, "test", settle=0.01)
    work.mark(["first"])
    time.sleep(0.1)
    work.mark(["first", "second"])  # while "first" is being handled
    gate.set()
    wait_idle(work)
    assert seen == ["first", "first", "second"] or seen == ["first", "second", "first"]
