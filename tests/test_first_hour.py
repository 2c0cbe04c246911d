"""Issue 40: a new user's first hour, as commands in one fresh folder on the shipped sample, offline.

The README's quick start, then its usage section's commands, in the order a reader runs them, each read
from the README itself (so the test follows the page). Every assertion is about what was written: the
manifests, the pruned shards and the report, never about seconds.
"""

from __future__ import annotations

import html
import json

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from test_docs import ROOT, SHELL, _cli, _workspace, commands, fenced_blocks, is_datapruner

pytestmark = pytest.mark.slow


def section_commands(heading: str) -> list[list[str]]:
    """The datapruner commands of the README section `heading`, from its blocks that are not skipped."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks = [b for b in fenced_blocks(ROOT / "README.md") if start < b.line <= end and not b.skip
              and b.lang in SHELL]
    return [c for b in blocks for c in commands(b.code) if is_datapruner(c)]


def kept_keys(run) -> list[str]:
    table = pq.read_table(run / "manifest/keep.parquet")
    return sorted(k for k, kept in zip(table.column("key").to_pylist(), table.column("kept").to_pylist()) if kept)


def shard_keys(run) -> list[str]:
    tars = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    return sorted(s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False))


def test_the_quick_start_and_the_usage_section_run_offline_in_a_fresh_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(_workspace(tmp_path / "ws"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    quick, usage = section_commands("## Quick start (Python 3.11, no GPU, offline)"), section_commands(
        "## Usage on real data")
    assert [c[1] for c in quick] == ["score"] and [c[1] for c in usage][:4] == ["embed", "cluster", "select", "write"]
    for command in quick + usage:
        _cli(command[1:])

    demo = tmp_path / "ws/runs/demo"
    assert len(kept_keys(demo)) == 300 and shard_keys(demo) == kept_keys(demo)
    assert pq.read_table(demo / "manifest/keep.parquet").num_rows == 1000
    page = html.unescape((demo / "report/index.html").read_text())
    assert "Against a random subset of the same size (300 samples), this selection is" in page
    assert "is a random init (pretrained: none)" in " ".join(page.split())

    parts = tmp_path / "ws/runs/parts"  # the last commands: select --keep 0.2, then write
    assert len(kept_keys(parts)) == 200 and shard_keys(parts) == kept_keys(parts)
    sizes = json.loads((parts / "shards/sizes.json").read_text())
    assert sum(sizes.values()) == 200 and all(len(name) == len("000000.tar") for name in sizes)
