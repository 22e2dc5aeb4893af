"""Fault tests: a control plane of their own (they stop its API server and etcd), and a tally of what was tried and
what was lost, printed at the end of the run."""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path

import pytest

from harness import Kube, Operator, temporary_namespace
from localcluster import BIG_NODE, NODES, Cluster

REPO = Path(__file__).resolve().parents[2]
TALLY: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])  # scenario -> [tried, lost]


def record(scenario: str, tried: int, lost: int) -> None:
    TALLY[scenario][0] += tried
    TALLY[scenario][1] += lost


@pytest.fixture(scope="session")
def tally():
    return record


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.section("faults: tried / lost")
    for scenario, (tried, lost) in TALLY.items():
        terminalreporter.write_line(f"{scenario:<55} tried {tried:>5}  lost {lost}")
    total = [sum(v[0] for v in TALLY.values()), sum(v[1] for v in TALLY.values())]
    terminalreporter.write_line(f"{'all scenarios':<55} tried {total[0]:>5}  lost {total[1]}")


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("fault-cluster"), nodes=[*NODES, BIG_NODE])
    cluster.up()
    k = Kube(cluster)
    # kopf's peering CRD, exactly as the chart ships it
    peering = subprocess.run([str(Path(k.kubectl_bin).parent / "helm"), "template", "mp", str(REPO / "charts" / "modelplane"),
                              "--kube-version", "1.34.4", "--show-only", "templates/peering.yaml"],
                             capture_output=True, text=True, check=True).stdout
    peering_file = tmp_path_factory.mktemp("peering") / "peering.yaml"
    peering_file.write_text(peering)
    k.install_crds(str(REPO / "crds"), str(peering_file))
    yield k
    cluster.down()


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


@pytest.fixture
def operator(kube, workdir):
    op = Operator(kube, workdir).start()
    yield op
    op.stop()


@pytest.fixture
def namespace(kube):
    with temporary_namespace(kube, "f") as name:
        yield name
