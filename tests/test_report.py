from typer.testing import CliRunner

from datapruner.cli import app


def test_report_shows_plots_and_kept_and_dropped_thumbnails(run_copy):
    result = CliRunner().invoke(app, ["report", str(run_copy)])
    assert result.exit_code == 0, result.output
    page = (run_copy / "report/index.html").read_text()
    assert (run_copy / "report/scores.png").stat().st_size > 1000
    assert (run_copy / "report/clusters.png").stat().st_size > 1000
    assert page.count("data:image/png;base64,") >= 8
    assert "not kept" in page and "below the global budget" in page
