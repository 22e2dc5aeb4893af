"""Medians and spreads of several side-by-side runs: reads each run's results.json (bench/run.py with the KubeAI peer)
and prints one markdown table, a row per figure, with each operator's median and its range over the runs, and the
ratio of the medians.

    python bench/spread.py RUN_DIR [RUN_DIR ...] > table.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def rows_of(run: Path) -> dict[str, dict]:
    results = json.loads((run / "results.json").read_text())
    return {row["figure"]: row for row in results["side_by_side"]["rows"]}


def cell(values: list) -> str:
    """median (min-max over the runs), or the one value; '-' where no run has it."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    median = statistics.median(values)
    if len(set(values)) == 1:
        return f"{median:g}"
    return f"{median:g} ({min(values):g}-{max(values):g})"


def table(runs: list[Path]) -> str:
    per_run = [rows_of(run) for run in runs]
    figures = list(dict.fromkeys(f for rows in per_run for f in rows))
    lines = [f"| figure ({len(runs)} runs: median (range)) | modelplane | KubeAI | ratio of medians |",
             "| --- | --- | --- | --- |"]
    for figure in figures:
        rows = [rows[figure] for rows in per_run if figure in rows]
        ours = [r["modelplane"] for r in rows]
        theirs = [r["kubeai"] for r in rows]
        unit = rows[0].get("unit") or ""
        ours_m = statistics.median([v for v in ours if v is not None]) if any(v is not None for v in ours) else None
        theirs_m = (statistics.median([v for v in theirs if v is not None])
                    if any(v is not None for v in theirs) else None)
        ratio = f"{ours_m / theirs_m:.2f}" if ours_m is not None and theirs_m else "-"
        label = f"{figure} ({unit})" if unit else figure
        lines.append(f"| {label} | {cell(ours)} | {cell(theirs)} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(table([Path(p) for p in sys.argv[1:]]))
