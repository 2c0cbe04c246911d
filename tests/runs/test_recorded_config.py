"""What a command on an existing run takes from the config run.json records: the embed inputs and the layout
(k-means, the pruned shards), nothing else. The policy, the seed, where the work runs and every permission
are this command's flags and config files, or the defaults (docs/design.md, Ownership)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from datapruner.cli import _config, app
from datapruner.config import Config

PROJECT = Path(__file__).resolve().parents[2]
OFFLINE_DEMO = str(PROJECT / "configs/offline-demo.yaml")


def cli(*args: str):
    return CliRunner().invoke(app, [*args, "-q"])


def policy(run: Path) -> dict:
    return json.loads((run / "manifest/summary.json").read_text())["policy"]


def record(run: Path, **config) -> None:
    info = json.loads((run / "run.json").read_text())
    info["config"].update(config)
    (run / "run.json").write_text(json.dumps(info))


def test_a_config_without_filters_applies_no_earlier_filter(run_copy):
    """issue 40: after `select --filter semdedup:eps=0.001`, `select --config offline-demo.yaml` (no `filters:`)
    applies no filter, and its budget and order are the config's."""
    assert cli("select", str(run_copy), "--filter", "semdedup:eps=0.001").exit_code == 0
    assert policy(run_copy)["filters"] == [{"name": "semdedup", "eps": 0.001}]
    result = cli("select", str(run_copy), "--config", OFFLINE_DEMO)
    assert result.exit_code == 0, result.output
    assert policy(run_copy)["filters"] == [] and policy(run_copy)["budget"] == "cluster"
    reasons = {r for r in pq.read_table(run_copy / "manifest/keep.parquet").column("reason").to_pylist()}
    assert not [r for r in reasons if "filter" in r], reasons


def test_the_policy_of_an_earlier_select_is_not_carried_on(run_copy):
    assert cli("select", str(run_copy), "--keep", "0.5", "--metric", "dbp", "--order", "easy",
               "--budget", "cluster").exit_code == 0
    assert cli("select", str(run_copy), "--keep", "0.4").exit_code == 0
    got = policy(run_copy)
    assert (got["metric"], got["order"], got["budget"]) == ("prototypicality", "hard", "global")


def test_the_layout_of_the_pruned_shards_is_the_runs(run_copy):
    """scored with shard_size 16: `write` without --shard-size still writes 16 to a shard."""
    assert cli("select", str(run_copy), "--keep", "0.5").exit_code == 0
    assert cli("write", str(run_copy)).exit_code == 0
    sizes = json.loads((run_copy / "shards/sizes.json").read_text())
    assert sorted(sizes.values()) == [14, 16]


def test_the_embed_inputs_stay_as_recorded_for_a_command_that_embeds_nothing(run_copy, tmp_path):
    other = tmp_path / "other-model.yaml"
    other.write_text("model: RN50\npretrained: openai\n")
    result = cli("select", str(run_copy), "--keep", "0.5", "--config", str(other))
    assert result.exit_code == 0, result.output
    assert "the run was embedded with model='datapruner-tiny', pretrained='none'" in result.stderr
    recorded = json.loads((run_copy / "run.json").read_text())["config"]
    assert (recorded["model"], recorded["pretrained"]) == ("datapruner-tiny", "none")


def test_permissions_and_where_it_runs_are_never_taken_from_the_run(run_copy):
    record(run_copy, allow_pipe=True, allow_unsafe_names=True, runner="ray", ray_address="10.1.2.3:6379",
           ray_runtime_env={"pip": ["anything"]}, workers=7, seed=9, metric="dbp", filters=[{"name": "semdedup"}])
    cfg = _config(None, run_copy)
    defaults = Config()
    for name in ("allow_pipe", "allow_unsafe_names", "runner", "ray_address", "ray_runtime_env", "workers", "seed",
                 "metric", "filters"):
        assert getattr(cfg, name) == getattr(defaults, name), name
    assert (cfg.model, cfg.clusters, cfg.shard_size) == ("datapruner-tiny", 4, 16)  # the embed inputs, the layout
    assert _config(None, run_copy, allow_pipe=True).allow_pipe  # this command's flag does


def test_every_command_that_reads_source_bytes_has_allow_pipe_flags():
    for command in ("embed", "score", "write", "verify"):
        text = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
        assert "--allow-pipe" in text and "--no-allow-pipe" in text, command
