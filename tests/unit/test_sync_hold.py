"""Status writes of one owner are spaced: routine progress waits for the interval, the last one held is written."""

import time

import pytest

from modelplane_operator import sync


@pytest.fixture
def owner(monkeypatch):
    monkeypatch.setattr(sync, "STATUS_INTERVAL", 0.2)
    owner = {"kind": "Model", "metadata": {"uid": f"u-{time.monotonic_ns()}", "namespace": "ns", "name": "m"}}
    yield owner
    sync.forget(("Model", "ns", "m"), owner["metadata"]["uid"])


def test_first_write_is_not_held(owner):
    assert sync.hold(("Model", "ns", "m"), owner["metadata"]["uid"], lambda: None) is False


def test_within_the_interval_the_last_held_write_runs_once(owner):
    runs = []
    sync.written(owner, {"phase": "Pending"})
    assert sync.hold(("Model", "ns", "m"), owner["metadata"]["uid"], lambda: runs.append("first"))
    assert sync.hold(("Model", "ns", "m"), owner["metadata"]["uid"], lambda: runs.append("second"))
    assert runs == []
    time.sleep(0.4)
    assert runs == ["second"]
    assert sync.hold(("Model", "ns", "m"), owner["metadata"]["uid"], lambda: runs.append("late")) is False  # interval over


def test_a_newer_write_or_a_return_to_the_written_status_cancels_the_held_one(owner):
    runs = []
    sync.written(owner, {"phase": "Pending"})
    sync.hold(("Model", "ns", "m"), owner["metadata"]["uid"], lambda: runs.append("held"))
    sync.written(owner, {"phase": "Ready"})  # written at once (what a person acts on)
    time.sleep(0.4)
    sync.hold(("Model", "ns", "m"), owner["metadata"]["uid"], lambda: runs.append("held again"))
    sync.drop_held(owner)
    time.sleep(0.4)
    assert runs == []


def test_a_failed_held_write_is_tried_again(owner):
    tries = []

    def publish():
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise RuntimeError("API server away")
    sync.written(owner, {"phase": "Pending"})
    sync.hold(("Model", "ns", "m"), owner["metadata"]["uid"], publish)
    time.sleep(0.8)
    assert len(tries) == 2 and tries[1] - tries[0] >= 0.15
