"""Status writes of one owner are spaced: routine progress waits for the interval, the last one held is written;
what a person acts on is written at once; nothing is written twice."""

import time

import pytest

from modelplane_operator.statuswriter import StatusWriter


@pytest.fixture
def writer():
    return StatusWriter(interval=0.2)


def owner(status: dict | None = None):
    """A Model that has a status already (`status`), or a new one without."""
    return {"kind": "Model", "metadata": {"uid": f"u-{time.monotonic_ns()}", "namespace": "ns", "name": "m"},
            **({"status": status} if status else {})}


def existing():
    return owner({"phase": "Pending"})


def recorder(log):
    return lambda o, old, new: log.append((old.get("phase"), new["phase"], new.get("n")))


def test_under_load_a_new_owners_first_status_waits_first_wait_and_the_last_one_is_written():
    writer, log, o = StatusWriter(interval=0.1, busy_owners=0, first_wait=0.4), [], owner()
    assert writer.busy()
    writer.publish(o, {"phase": "Pending"}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Loading"}, recorder(log), urgent=False)
    time.sleep(0.2)  # longer than the interval: a new owner under load waits first_wait
    assert log == []
    time.sleep(0.4)
    assert log == [(None, "Loading", None)]  # one write for the way through Pending to Loading


def test_under_load_a_new_owner_reaching_ready_is_written_at_once_and_what_was_held_is_dropped():
    writer, log, o = StatusWriter(interval=0.1, busy_owners=0, first_wait=0.3), [], owner()
    writer.publish(o, {"phase": "Pending"}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Ready"}, recorder(log), urgent=True)
    assert log == [(None, "Ready", None)]
    time.sleep(0.5)
    assert log == [(None, "Ready", None)]  # the held Pending, older, is never written


def test_idle_a_new_owners_first_status_is_written_at_once(writer):
    log, o = [], owner()
    assert not writer.busy()
    writer.publish(o, {"phase": "Pending"}, recorder(log), urgent=False)
    assert log == [(None, "Pending", None)]


def test_busy_when_many_owners_were_written_in_the_interval_not_one_owner_often():
    writer, one = StatusWriter(interval=0.2, busy_owners=3), owner({"phase": "Pending"})
    for phase in ("Loading", "Ready", "Loading", "Ready"):
        writer.publish(one, {"phase": phase}, lambda *a: None, urgent=True)
    assert not writer.busy()
    for _ in range(2):
        writer.publish(owner(), {"phase": "Pending"}, lambda *a: None, urgent=True)
    assert writer.busy()
    time.sleep(0.3)
    assert not writer.busy()


def test_an_owner_with_a_status_is_written_at_once_and_an_unchanged_status_is_not_written(writer):
    log, o = [], owner({"phase": "Loading"})
    writer.publish(o, {"phase": "Pending"}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Pending"}, recorder(log), urgent=False)
    assert log == [("Loading", "Pending", None)]


def test_within_the_interval_the_last_held_status_is_written_once(writer):
    log, o = [], existing()
    writer.publish(o, {"phase": "Loading", "n": 0}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Loading", "n": 1}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Loading", "n": 2}, recorder(log), urgent=False)
    assert log == [("Pending", "Loading", 0)]
    time.sleep(0.4)
    assert log == [("Pending", "Loading", 0), ("Loading", "Loading", 2)]


def test_urgent_is_written_at_once_and_replaces_what_was_held(writer):
    log, o = [], existing()
    writer.publish(o, {"phase": "Loading", "n": 0}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Loading", "n": 1}, recorder(log), urgent=False)  # held
    writer.publish(o, {"phase": "Ready"}, recorder(log), urgent=True)
    time.sleep(0.4)
    assert log == [("Pending", "Loading", 0), ("Loading", "Ready", None)]


def test_a_return_to_the_written_status_cancels_the_held_one(writer):
    log, o = [], existing()
    writer.publish(o, {"phase": "Loading", "n": 0}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Loading", "n": 1}, recorder(log), urgent=False)  # held
    writer.publish(o, {"phase": "Loading", "n": 0}, recorder(log), urgent=False)  # back to what was written
    time.sleep(0.4)
    assert log == [("Pending", "Loading", 0)]


def test_a_failed_held_write_is_tried_again(writer):
    log, o, fail = [], existing(), [True]

    def flaky(owner_, old, new):
        if new.get("n") == 1 and fail.pop(0) if fail else False:
            raise RuntimeError("API server away")
        log.append(new.get("n"))

    writer.publish(o, {"phase": "Loading", "n": 0}, flaky, urgent=False)
    writer.publish(o, {"phase": "Loading", "n": 1}, flaky, urgent=False)
    time.sleep(0.8)
    assert log == [0, 1]


def test_a_held_status_never_overwrites_a_newer_one(writer):
    log, o = [], existing()
    writer.publish(o, {"phase": "Loading", "n": 0}, recorder(log), urgent=False)
    writer.publish(o, {"phase": "Loading", "n": 1}, recorder(log), urgent=False)  # held
    writer.publish(o, {"phase": "Ready"}, recorder(log), urgent=True)
    writer._release(o["metadata"]["uid"])  # the timer firing late
    assert log[-1] == ("Loading", "Ready", None)
