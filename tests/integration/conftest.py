"""Integration fixtures: a real local control plane (one per test session), the CRDs, and the operator running as
a separate process against it, exactly as `make demo` runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from folderscope import until_folder_done
from harness import Kube, Operator, temporary_namespace
from localcluster import Cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    until_folder_done(__file__).callback(c.down)
    c.up()
    return c


@pytest.fixture(scope="session")
def kube(cluster) -> Kube:
    k = Kube(cluster)
    k.install_crds(str(REPO / "crds"))
    return k


@pytest.fixture(scope="session")
def operator(kube, tmp_path_factory):
    op = Operator(kube, tmp_path_factory.mktemp("operator")).start()

    def stop() -> None:
        op.stop()
        # A handler that raised is a bug here (no outages in these tests); the webhook's answers to malformed
        # requests are logged by aiohttp with a traceback and are expected.
        assert "failed with an exception" not in op.log(), op.log()[-5000:]
    until_folder_done(__file__).callback(stop)
    return op


@pytest.fixture
def namespace(kube):
    with temporary_namespace(kube, "t") as name:
        yield name
