"""Process helpers shared by the local cluster's scripts: is a pid alive, stop it (TERM, then KILL)."""

from __future__ import annotations

import os
import signal
import time


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def kill(pid: int | None, grace: float = 10) -> None:
    """SIGTERM, and SIGKILL after `grace` seconds (at once when grace is 0); reaps it if it is our child."""
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM if grace else signal.SIGKILL)
    except OSError:
        return
    end = time.monotonic() + grace
    while time.monotonic() < end and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
