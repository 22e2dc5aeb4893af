"""What a test folder's shared fixtures started (clusters, vLLM servers, the operator), closed when its last test is
over. pytest keeps session fixtures to the end of the session: without this, the e2e folder's vLLM servers and the
integration folder's control plane and operator would still run beside the real node's pods on the same 2 cores."""

from __future__ import annotations

import contextlib
from pathlib import Path

_EXITS: dict[Path, contextlib.ExitStack] = {}


def until_folder_done(conftest_file: str) -> contextlib.ExitStack:
    """The ExitStack closed after the last test of the folder holding `conftest_file` (or at the end of the session,
    whichever comes first); a session fixture enters what it starts into it instead of tearing it down itself."""
    return _EXITS.setdefault(Path(conftest_file).resolve().parent, contextlib.ExitStack())


def leaving(test_file: Path, next_test_file: Path | None) -> None:
    """Called after each test's teardown: closes the folder's stack when the next test is elsewhere (or none)."""
    folder = test_file.resolve().parent
    if folder in _EXITS and (next_test_file is None or next_test_file.resolve().parent != folder):
        _EXITS.pop(folder).close()


def close_all() -> None:
    while _EXITS:
        _EXITS.popitem()[1].close()
