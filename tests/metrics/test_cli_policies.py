"""`datapruner score|select` with the new metrics and policies, end to end on real shards: exactly K kept."""

import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from shardmaker import write_tar
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
    if "semdedup:fraction=0.1" in policy:
        assert reasons.count("removed by filter semdedup") == 6
    if "semdedup-dbp.yaml" in policy[-1]:  # eps 0.001 (near-exact copies), then 10 % of the rest
        dup = pq.read_table(run_copy / "manifest/keep.parquet").column("score_semdedup").to_pylist()
        copies = sum(d > 0.999 for d in dup)
        assert reasons.count("removed by filter semdedup") == copies + round(0.1 * (60 - copies))
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


def test_the_semdedup_preset_removes_every_exact_copy(shard_dir, tmp_path):
    """configs/semdedup-dbp.yaml on the test shards plus a shard of 12 byte-identical copies of earlier
    samples (under new keys): a fixed fraction alone (10 % of 72 = 7) would keep some of them."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
    from reportdemo import copies_of

    src = tmp_path / "src"
    shutil.copytree(shard_dir, src)
    write_tar(src / "zz-copies.tar", copies_of(src / "shard-00000.tar", 12))
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["score", str(src), "--keep", "0.3", "--out", str(run), *TINY_FLAGS,
                                      "--config", str(CONFIGS / "semdedup-dbp.yaml")])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(run / "manifest/keep.parquet").to_pylist()
    reason = {r["key"]: r["reason"] for r in rows}
    pairs = [(key.removeprefix("copy-of-"), key) for key in reason if key.startswith("copy-of-")]
    assert len(pairs) == 12
    for pair in pairs:  # of two identical samples, SemDeDup leaves at most one
        assert [reason[k] for k in pair].count("removed by filter semdedup") >= 1, pair
    assert sum(r["kept"] for r in rows) == round(0.3 * 72)
