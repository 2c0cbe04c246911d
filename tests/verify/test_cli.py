"""`datapruner verify` on the command line."""

import json

from typer.testing import CliRunner

from datapruner.cli import app


def test_verify_command(run_copy, tmp_path):
    out = tmp_path / "verify_out"
    result = CliRunner().invoke(app, [
        "verify", str(run_copy), "--methods", "random,proto_easy", "--fractions", "0.5,1", "--seeds", "0,1,2",
        "--kd-alphas", "0,0.5", "--budget-modes", "fixed_steps", "--test-fraction", "0.25", "--epochs", "2",
        "--train-batch-size", "16", "--width", "16", "--threads", "1", "--results-dir", str(out), "--quiet",
        "--model", "datapruner-tiny", "--pretrained", "none", "--device", "cpu", "--clusters", "4",
    ])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 2 * 2 * 3 * 3 and {r["alpha"] for r in rows} == {0.0, 0.5}  # + the "val" choice of 0.5


def test_verify_command_rejects_an_unknown_method(run_copy):
    result = CliRunner().invoke(app, ["verify", str(run_copy), "--methods", "nonsense", "--quiet"])
    assert result.exit_code == 2 and "nonsense" in result.output


def test_verify_refuses_an_impossible_grid_before_any_work(run_copy):
    for flags, word in ((["--fractions", "0,0.5"], "fractions"), (["--pools", "1.5"], "pools"),
                        (["--kd-alphas", "0,2"], "alphas"), (["--budget-modes", "forever"], "budget_modes"),
                        (["--resample", "encoder"], "resample takes teacher")):
        result = CliRunner().invoke(app, ["verify", str(run_copy), *flags, "--quiet"])
        assert result.exit_code == 2 and word in result.output, (flags, result.output)
    assert not (run_copy / "verify").exists()
