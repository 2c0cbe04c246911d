"""`datapruner score|select` with the new metrics and policies, end to end on real shards: exactly K kept."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from typer.testing import CliRunner

from datapruner.cli import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_FLAGS = ["--model", "datapruner-tiny", "--pretrained", "none", "--device", "cpu", "--batch-size", "8",
              "--num-workers", "0", "--clusters", "4", "--shard-size", "16", "--quiet"]


def kept_in(run: Path) -> tuple[int, int, list[str]]:
    rows = pq.read_table(run / "manifest/keep.parquet").to_pylist()
    shards = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    written = sum(1 for _ in wds.WebDataset(shards, shardshuffle=False)) if shards else 0
    return sum(r["kept"] for r in rows), written, [r["reason"] for r in rows]


@pytest.mark.parametrize("policy", [
    ["--metric", "dbp"],
    ["--metric", "el2n", "--filter", "el2n:offset=0.05"],
    ["--budget", "dbp", "--filter", "semdedup:fraction=0.1"],
    ["--config", str(CONFIGS / "semdedup-dbp.yaml")],
])
def test_score_keeps_exactly_k(shard_dir, run_copy, policy):
    result = CliRunner().invoke(app, ["score", str(shard_dir), "--keep", "0.3", "--out", str(run_copy),
                                      *TINY_FLAGS, *policy])
    assert result.exit_code == 0, result.output
    kept, written, reasons = kept_in(run_copy)
    assert kept == written == 18
    if "semdedup" in " ".join(policy):
        assert reasons.count("removed by filter semdedup") == 6
    if "dbp" in " ".join(policy):
        clusters = pq.read_table(run_copy / "manifest/dbp_clusters.parquet")
        assert sum(clusters.column("quota").to_pylist()) == 18
        assert {"size", "d_intra", "d_inter", "complexity", "p", "quota"} <= set(clusters.column_names)


def test_select_with_filters_rescored_in_seconds(run_copy):
    result = CliRunner().invoke(app, ["select", str(run_copy), "--keep", "0.5", "--quiet",
                                      "--filter", "semdedup:fraction=0.2", "--filter", "clip_score:fraction=0.25"])
    assert result.exit_code == 0, result.output
    reasons = pq.read_table(run_copy / "manifest/keep.parquet").column("reason").to_pylist()
    assert reasons.count("kept") == 30
    assert reasons.count("removed by filter semdedup") == 12 and reasons.count("removed by filter clip_score") == 12


def test_a_bad_filter_is_a_clear_error(run_copy):
    result = CliRunner().invoke(app, ["select", str(run_copy), "--filter", "semdedup:eps=0.1,fraction=0.2"])
    assert result.exit_code != 0 and "exactly one of eps, fraction" in result.output


def test_metric_options_from_flags_reach_the_dbp_budget(run_copy):
    def tau_after(*flags):
        result = CliRunner().invoke(app, ["select", str(run_copy), "--keep", "0.3", "--metric", "dbp", "-q", *flags])
        assert result.exit_code == 0, result.output
        return pq.read_table(run_copy / "manifest/dbp_clusters.parquet")

    default = tau_after()
    sharp = tau_after("--metric-option", "dbp:tau=0.0001,beta=0")
    assert sum(sharp.column("quota").to_pylist()) == 18
    assert max(sharp.column("p").to_pylist()) > max(default.column("p").to_pylist())
    assert sharp.column("lower").to_pylist() == [0] * sharp.num_rows
    bad = CliRunner().invoke(app, ["select", str(run_copy), "--metric-option", "dbp-tau"])
    assert bad.exit_code != 0 and "--metric-option" in bad.output
