"""datapruner never changes a byte it does not own: every test hashes the user's files before and after."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import TINY
from shardmaker import write_shards
from typer.testing import CliRunner

from datapruner import api
from datapruner.cli import app
from datapruner.config import Config

CFG = Config(**TINY, clusters=4, shard_size=16)
TINY_FLAGS = ["--model", "datapruner-tiny", "--pretrained", "none", "--batch-size", "8", "--num-workers", "0",
              "--device", "cpu", "--clusters", "4", "-q"]


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def user_folder(root: Path) -> Path:
    """img2dataset-style output the user owns: shards/00000.tar … 00003.tar with stats beside them."""
    write_shards(root / "shards", n_shards=4, per_shard=5)
    for i, path in enumerate(sorted((root / "shards").glob("*.tar"))):
        path.rename(root / "shards" / f"{i:05d}.tar")
        (root / "shards" / f"{i:05d}_stats.json").write_text('{"count": 5}')
    return root


def test_out_that_contains_src_is_refused(tmp_path):
    d = user_folder(tmp_path / "D")
    before = hashes(d)
    result = CliRunner().invoke(app, ["score", str(d / "shards"), "--keep", "0.3", "--out", str(d), *TINY_FLAGS])
    assert result.exit_code == 2 and "--out" in result.output
    assert hashes(d) == before


def test_out_inside_src_is_refused(tmp_path):
    d = user_folder(tmp_path / "D")
    before = hashes(d)
    result = CliRunner().invoke(app, ["score", str(d / "shards"), "--keep", "0.3", "--out", str(d / "shards/run"),
                                      *TINY_FLAGS])
    assert result.exit_code == 2 and "overlaps the input folder" in result.output
    assert hashes(d) == before and not (d / "shards/run").exists()


def test_a_user_folder_that_is_not_a_run_is_refused_as_out(tmp_path, shard_dir):
    d = user_folder(tmp_path / "D")
    before = hashes(d)
    result = CliRunner().invoke(app, ["score", str(shard_dir), "--keep", "0.3", "--out", str(d), *TINY_FLAGS])
    assert result.exit_code == 2 and "not empty and not a datapruner run" in result.output
    assert hashes(d) == before


def test_files_a_user_puts_in_a_run_are_never_deleted(tmp_path, shard_dir):
    run = tmp_path / "run"
    api.score(str(shard_dir), run, 0.3, CFG, progress=False)
    mine = {run / "shards/00000.tar": b"user tar", 
            run / "manifest/notes.txt": b"my notes", run / "report/extra.png": b"png"}
    for path, data in mine.items():
        path.write_bytes(data)
    api.select(run, 0.8, CFG)  # a new selection: the old pruned shards go, these must stay
    api.write(run, CFG.replace(shard_size=5), progress=False)
    api.select(run, 0.1, CFG)
    api.write(run, CFG, progress=False)
    assert all(path.read_bytes() == data for path, data in mine.items())


def test_precomputed_embeddings_are_never_written(tmp_path, scored_run, shard_dir):
    emb = tmp_path / "precomputed"
    shutil.copytree(scored_run / "embeddings", emb)
    before = hashes(emb)
    run = tmp_path / "run"
    with_emb = CFG.replace(embeddings=str(emb))
    api.score(str(shard_dir), run, 0.3, with_emb, progress=False)
    api.cluster(run, CFG.replace(clusters=3))
    api.select(run, 0.5, CFG.replace(metric="el2n_probe", filters=({"name": "semdedup", "fraction": 0.1},)))
    api.write(run, CFG, progress=False)
    api.report(run)
    refused = CliRunner().invoke(app, ["score", str(shard_dir), "--keep", "0.3", "--out", str(run), *TINY_FLAGS])
    assert refused.exit_code == 2 and "embeddings:" in refused.output  # would embed: it names the change
    api.score(str(shard_dir), run, 0.3, CFG.replace(re_embed=True), progress=False)  # into RUN/embeddings
    assert hashes(emb) == before
    assert (run / "embeddings/img_emb").is_dir()


def test_a_whole_cli_run_writes_nothing_outside_run(tmp_path):
    """Source, config and working directory in one scratch tree: only RUN may change in it."""
    scratch = tmp_path / "scratch"
    write_shards(scratch / "src", n_shards=2, per_shard=10)
    (scratch / "cfg.yaml").write_text("model: datapruner-tiny\npretrained: none\ndevice: cpu\nnum_workers: 0\n")
    before = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
              for p in scratch.rglob("*") if p.is_file()}
    cli = [sys.executable, "-m", "datapruner.cli"]
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}  # matplotlib's cache is not ours to judge
    for args in (["score", "src", "--keep", "0.5", "--out", "run", "-c", "cfg.yaml", "--clusters", "2", "-q"],
                 ["select", "run", "--keep", "0.3", "-q"], ["write", "run", "-q"], ["report", "run"]):
        subprocess.run(cli + args, cwd=scratch, env=env, check=True, capture_output=True)
    after = {p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
             for p in scratch.rglob("*") if p.is_file() and not p.is_relative_to(scratch / "run")}
    assert after == before
    assert {p.name for p in scratch.iterdir()} == {"src", "cfg.yaml", "run"}


def test_a_foreign_file_at_an_output_name_is_not_overwritten(tmp_path, shard_dir):
    run = tmp_path / "run"
    api.score(str(shard_dir), run, 0.3, CFG, progress=False)
    api.select(run, 0.8, CFG)
    squatter = run / "shards/000002.tar"
    squatter.write_bytes(b"the user's, not ours")
    result = CliRunner().invoke(app, ["write", str(run), "-q"])
    assert result.exit_code == 2 and "000002.tar is in the way" in result.output
    assert squatter.read_bytes() == b"the user's, not ours"
