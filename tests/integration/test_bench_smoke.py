"""The benchmark harness still runs (10 Models); its figures are not judged here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--models", "10", "--samples", "3",
                          "--steady-seconds", "5", "--agents", "5", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["burst"]["models"] == 10 and results["steady"]["objects_written"] == 0
    assert results["restart"]["objects_written"] == 0
    assert sorted(results["latency"], key=int) == ["1", "10", "23"]  # 10 present (3 samples among them), burst of 10
    assert results["burst"]["operator_requests"]["writes"] > 0  # the audit log saw the operator's own requests
    assert results["agents"]["agents"] == 5 and results["agents"]["all_configmaps_s"]["n"] == 3
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| burst of 10 |" in (tmp_path / "results.md").read_text()
