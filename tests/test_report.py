import json

from typer.testing import CliRunner

from datapruner.cli import app
from datapruner.io.rundir import RunDir


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def policy_line(page: str) -> str:
    return page.split('id="policy">', 1)[1].split("</div>", 1)[0]


def test_report_is_one_page_with_inline_plots_and_kept_and_dropped_thumbnails(run_copy):
    invoke("report", run_copy)
    rd = RunDir(run_copy)
    assert [p.name for p in rd.report_dir.iterdir()] == ["index.html"]
    page = rd.report_html.read_text()
    assert page.count("data:image/png;base64,") >= 8 + 3  # thumbnails + score, cluster and map plots
    assert "dropped" in page and "below the global budget" in page
    assert "keep the hardest 30 % by prototypicality" in policy_line(page)


def test_report_after_select_and_write_shows_the_new_selection(run_copy):
    rd = RunDir(run_copy)
    invoke("select", run_copy, "--keep", "0.5")
    page = rd.report_html.read_text()
    assert "keep the hardest 50 % by prototypicality" in policy_line(page)
    assert "not written for this selection yet" in page  # select removed the 0.3 selection's shards

    invoke("write", run_copy)
    page = rd.report_html.read_text()
    kept = json.loads(rd.summary_json.read_text())["counts"]["kept"]
    assert kept == 30 and "(keep fraction 0.5)" in page and "30 %" not in policy_line(page)
    assert f"written: {kept} samples" in page
    marker = json.loads(rd.marker("report", "report").read_text())
    assert marker["outputs"] == ["report/index.html"]
