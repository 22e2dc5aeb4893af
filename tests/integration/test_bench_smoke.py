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
                          "--steady-seconds", "5", "--agents", "5", "--unrelated", "40", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["burst"]["models"] == 10 and results["steady"]["objects_written"] == 0
    assert results["restart"]["objects_written"] == 0
    assert sorted(results["latency"], key=int) == ["1", "10", "23"]  # 10 present (3 samples among them), burst of 10
    assert results["burst"]["operator_requests"]["writes"] > 0  # the audit log saw the operator's own requests
    assert results["agents"]["agents"] == 5 and results["agents"]["all_configmaps_s"]["n"] == 3
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["restart"]["operator_peak_rss_mb"] >= results["restart"]["operator_rss_mb"] > 0
    admission = results["admission"]  # pods created one by one, idle and all through the burst, all injected
    assert admission["idle_ms"]["n"] == 50 and admission["during_burst_pods"] == admission["during_burst_ms"]["n"] >= 1
    assert admission["not_injected"] == 0 and admission["errors"] == 0
    unrelated = results["unrelated"]  # 40 Pods and 40 ConfigMaps that the operator must neither list nor watch
    assert unrelated["unrelated_pods"] == unrelated["unrelated_configmaps"] == 40
    assert unrelated["peak_rss_mb_after_restart"] >= unrelated["rss_mb_after_restart"] > 0
    assert unrelated["rss_mb_before"] > 0 and unrelated["rss_mb_after_create"] > 0
    uris = unrelated["pod_and_configmap_watch_uris"]
    assert any(u.startswith("list /api/v1/pods") for u in uris), uris
    assert all("labelSelector=" in u for u in uris), uris
    assert unrelated["pod_and_configmap_requests_without_label_selector"] == 0, uris
    text = (tmp_path / "results.md").read_text()
    assert "| burst of 10 |" in text and "| pod admission (injected), idle" in text and "40 unrelated Pods" in text
