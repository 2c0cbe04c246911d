"""A `select` killed while it removes the previous selection's pruned shards (or just after its marker):
the rerun finishes the removal before anything is marked done, says so, and RUN/shards then holds exactly
the manifest's kept samples or nothing; `write` then gives what an uninterrupted select and write give."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import TINY

from datapruner import api
from datapruner.config import Config
from datapruner.io.tar_samples import iter_samples

KILLPOINTS = Path(__file__).with_name("killpoints.py")
CLI = [sys.executable, "-m", "datapruner.cli"]
SELECT = ["select", "--keep", "0.3", "-q"]
KILL_POINTS = {  # where in select's sweep of the 8 pruned shards written at keep 0.5 the process dies
    "after the 1st old shard": "unlink:shards/*.tar:1",
    "after the 6th old shard": "unlink:shards/*.tar:6",
    "just after select's marker": "marker:select",
}


@pytest.fixture(scope="module")
def written_at_half(tmp_path_factory, shard_dir) -> Path:
    """60 samples kept at 0.5 and written 4 to a shard: 8 pruned shards, each with its parquet and stats."""
    run = tmp_path_factory.mktemp("killed-select") / "run"
    api.score(str(shard_dir), run, 0.5, Config(**TINY, clusters=4, shard_size=4), progress=False)
    assert len(list((run / "shards").glob("*.tar"))) == 8
    return run


@pytest.fixture(scope="module")
def uninterrupted(written_at_half, tmp_path_factory) -> Path:
    run = Path(shutil.copytree(written_at_half, tmp_path_factory.mktemp("uninterrupted") / "run"))
    for args in (["select", str(run), "--keep", "0.3", "-q"], ["write", str(run), "-q"]):
        subprocess.run(CLI + args, check=True, capture_output=True)
    return run


def select(run: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    args = [SELECT[0], str(run), *SELECT[1:]]
    prefix = [sys.executable, str(KILLPOINTS), kill_at, "--"] if kill_at else CLI
    return subprocess.run(prefix + args, capture_output=True, text=True)


def kept_keys(run: Path) -> set[str]:
    table = pq.read_table(run / "manifest/keep.parquet", columns=["key", "kept"])
    return {k for k, kept in zip(table.column("key").to_pylist(), table.column("kept").to_pylist()) if kept}


def shard_keys(run: Path) -> list[str]:
    keys = []
    for tar in sorted((run / "shards").glob("*.tar")):
        with open(tar, "rb") as f:
            keys += [s.key for s in iter_samples(f)]
    return keys


def side_files_without_their_shard(run: Path) -> list[str]:
    """NAME.parquet or NAME_stats.json without NAME.tar, and a sizes.json naming other shards."""
    shards = run / "shards"
    tars = {p.name for p in shards.glob("*.tar")}
    strays = [p.name for p in shards.glob("*.parquet") if p.with_suffix(".tar").name not in tars]
    strays += [p.name for p in shards.glob("*_stats.json") if p.name.replace("_stats.json", ".tar") not in tars]
    if (shards / "sizes.json").exists() and set(json.loads((shards / "sizes.json").read_text())) != tars:
        strays.append("sizes.json")
    return strays


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_select_killed_in_its_sweep_resumes_to_shards_that_match_the_manifest(point, written_at_half,
                                                                               uninterrupted, tmp_path):
    run = Path(shutil.copytree(written_at_half, tmp_path / "run"))
    killed = select(run, KILL_POINTS[point])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run / "_done/select/.sweep").exists()  # the step is not over

    rerun = select(run)
    assert rerun.returncode == 0, rerun.stderr
    assert "an interrupted command had not finished removing" in rerun.stdout
    assert shard_keys(run) == [] and side_files_without_their_shard(run) == []
    assert not (run / "_done/select/.sweep").exists()

    subprocess.run(CLI + ["write", str(run), "-q"], check=True, capture_output=True)
    assert sorted(shard_keys(run)) == sorted(kept_keys(run)) and len(kept_keys(run)) == 18
    assert side_files_without_their_shard(run) == []
    for sub in ("manifest/keep.parquet", *(str(p.relative_to(uninterrupted)) for p in (uninterrupted / "shards").iterdir())):
        assert (run / sub).read_bytes() == (uninterrupted / sub).read_bytes(), sub


def test_an_uninterrupted_select_leaves_no_sweep_flag_and_no_note(written_at_half, tmp_path):
    run = Path(shutil.copytree(written_at_half, tmp_path / "run"))
    result = select(run)
    assert result.returncode == 0 and "an interrupted command" not in result.stdout
    assert not list((run / "_done").glob("*/.sweep")) and shard_keys(run) == []
