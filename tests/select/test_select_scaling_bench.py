"""The scaling benchmark runs end to end at tiny sizes: every step in its own process, select's peak RSS
measured, and the part-by-part manifest equal to the in-memory reference's."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_scaling_benchmark_reports_per_row_times_and_select_rss_at_tiny_sizes(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench/select_scaling.py"), "--sizes", "2000,4000",
                          "--fixed-k", "4", "--part-rows", "1500", "--iters", "3", "--k-modes", "fixed",
                          "--baseline-up-to", "4000", "--tmp", str(tmp_path)],
                         check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
    report = json.loads(out.stdout)
    sizes = report["per_size"]
    assert [r["n"] for r in sizes] == [2000, 4000]
    for row in sizes:
        assert row["same_manifest"] is True
        assert row["select_peak_rss_mib"] > 0 and row["select_us_per_row"] > 0
    assert [r["select_peak_rss_mib_vs_smallest"] for r in report["ratios"]][0] == 1.0
    assert not list(tmp_path.iterdir())  # the runs it wrote are gone
