from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from reportdemo import DEMO_POLICY, write_demo_source
from typer.testing import CliRunner

from datapruner.cli import app


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A semdedup + dbp run (end to end, tiny random-init model) over test shards with copies and bad samples."""
    root = tmp_path_factory.mktemp("report-demo")
    src = write_demo_source(root / "src")
    run = root / "run"
    args = ["score", str(src), "--keep", "0.4", "--out", str(run), "--model", "datapruner-tiny", "--pretrained", "none",
            "--device", "cpu", "--batch-size", "16", "--num-workers", "0", "--clusters", "4", "--shard-size", "16",
            "-q", *DEMO_POLICY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def demo_copy(demo_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(demo_run, dst)
    return dst
