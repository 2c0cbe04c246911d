"""`datapruner index` from the shell: a summary line, one-line refusals, and no model loaded."""

import json

from cli_run import run_cli


def test_index_prints_where_it_wrote_without_loading_the_model(scored_run, tmp_path):
    result, heavy = run_cli(["index", str(scored_run), "--format", "wids", "--out", str(tmp_path / "w"), "--json"])
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["folder"] == str(tmp_path / "w") and summary["files"] == ["dataset.json", "kept_indices.npy"]
    assert not heavy


def test_an_unknown_format_and_a_run_without_selection_are_one_line_errors(scored_run, tmp_path):
    result, _ = run_cli(["index", str(scored_run), "--format", "parquet"])
    assert result.returncode != 0 and result.stderr.strip().splitlines() == [
        "error: --format parquet: expected one of dali, wids, energon, uids"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run/run.json").write_text(json.dumps({"shards": []}))
    result, _ = run_cli(["index", str(tmp_path / "run"), "--format", "dali"])
    assert result.returncode != 0 and "has no selection" in result.stderr and len(result.stderr.splitlines()) == 1
