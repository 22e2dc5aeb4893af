import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# hack/ holds the local control plane helper; it is a script folder, not a package.
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO / "tests"))  # harness.py

import folderscope  # noqa: E402  (tests/folderscope.py, on the path just added)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield  # the test's own fixtures first: a namespace is deleted while its cluster still runs
    folderscope.leaving(Path(item.path), Path(nextitem.path) if nextitem else None)
    return result


def pytest_sessionfinish(session):
    folderscope.close_all()
