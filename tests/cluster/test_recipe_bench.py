"""The SemDeDup → DBP recipe benchmark, small: it runs, and datapruner's kept set and k-means objective match
the plain faiss + numpy baseline's."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench/semdedup_dbp_recipe.py"


def test_recipe_bench_matches_the_baseline_at_20k_rows():
    out = subprocess.run([sys.executable, str(BENCH), "--rows", "20000", "--clusters", "40", "--parts", "4"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    result = json.loads(out)
    assert result["rows"] == 20000 and result["clusters"] == 40
    assert result["kept_sets_identical"] and result["kept"] == 6000
    assert result["removed_by_semdedup_baseline"] > 0  # the planted near-copies are found
    assert result["kmeans"]["relative_gap"] <= 1e-3  # datapruner's objective within 0.1 % (or better)
    assert result["kmeans"]["datapruner_iterations"] < result["kmeans"]["baseline_iterations"] == 100
    assert result["seconds"]["datapruner_over_baseline"] > 0
