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
                          "--steady-seconds", "5", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["burst"]["models"] == 10 and results["steady"]["objects_written"] == 0
    assert results["restart"]["objects_written"] == 0
    assert "| burst of 10 |" in (tmp_path / "results.md").read_text()
