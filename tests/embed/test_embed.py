import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from conftest import TINY
from shardmaker import sample_members, write_shards, write_tar
from typer.testing import CliRunner

from datapruner import api
from datapruner.cli import app
from datapruner.config import Config


def _tree(root: Path, sub: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / sub).rglob("*")) if p.is_file()}


def _bad_shards(root: Path) -> Path:
    good = [(f"{i:04d}", sample_members(i, i % 4)) for i in range(6)]
    corrupt = ("c001", {**sample_members(100, 1), "jpg": b"\xff\xd8\xff\xe0 not really a jpeg"})
    no_image = ("n001", {"txt": b"a caption without a picture", "cls": b"2"})
    write_tar(root / "00.tar", good[:3] + [corrupt, no_image] + good[3:])
    truncated = write_tar(root / "01.tar", [(f"t{i:03d}", sample_members(200 + i, 0)) for i in range(5)])
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: int(len(raw) * 0.7)])
    return root


def test_embeddings_match_valid_samples_and_errors_have_reasons(tmp_path):
    src = _bad_shards(tmp_path / "src")
    run = tmp_path / "run"
    summary = api.embed(str(src), run, Config(**TINY, embed_text=True), progress=False)

    meta0 = pq.read_table(run / "embeddings/metadata/metadata_0.parquet")
    emb0 = np.load(run / "embeddings/img_emb/img_emb_0.npy")
    assert meta0.column("key").to_pylist() == ["0000", "0001", "0002", "0003", "0004", "0005"]
    assert emb0.shape == (6, 64) and emb0.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(emb0.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert np.load(run / "embeddings/text_emb/text_emb_0.npy").shape == (6, 64)
    assert meta0.column("label").to_pylist() == [0, 1, 2, 3, 0, 1]
    assert meta0.column("uid").to_pylist()[0] == f"{0:032x}"

    errors = pq.read_table(run / "errors/part-0.parquet").to_pylist()
    reasons = {e["key"]: e["reason"] for e in errors}
    assert "undecodable image" in reasons["c001"]
    assert "no image member" in reasons["n001"]
    trunc = pq.read_table(run / "errors/part-1.parquet").to_pylist()
    assert len(trunc) == 1 and "truncated" in trunc[0]["reason"]
    valid1 = pq.read_table(run / "embeddings/metadata/metadata_1.parquet").num_rows
    assert valid1 + len(trunc) <= 5 and valid1 >= 2
    assert summary["counts"]["valid"] == 6 + valid1 and summary["counts"]["errors"] == 3


def test_embedding_reader_reads_the_embeddings_back(tmp_path, shard_dir):
    from embedding_reader import EmbeddingReader

    run = tmp_path / "run"
    api.embed(str(shard_dir), run, Config(**TINY), progress=False)
    reader = EmbeddingReader(str(run / "embeddings/img_emb"), file_format="parquet_npy",
                             meta_columns=["key", "shard"], metadata_folder=str(run / "embeddings/metadata"))
    assert reader.count == 60
    keys, rows = [], 0
    for emb, meta in reader(batch_size=25, start=0, end=reader.count, parallel_pieces=1, max_piece_size=100):
        rows += len(emb)
        keys.extend(meta["key"])
    assert rows == 60 and sorted(keys) == [f"{i:06d}" for i in range(60)]


def _done_parts(run, step: str) -> int:
    """Parts whose marker says done (a marker being written or an intent does not count)."""
    from datapruner.io.rundir import RunDir

    rd = RunDir(run)
    return sum(1 for p in rd.marked_parts(step) if rd.read_marker(step, p)) if (run / "_done" / step).is_dir() else 0


def test_killed_embed_resumes_to_identical_files(tmp_path):
    src = tmp_path / "src"
    write_shards(src, n_shards=8, per_shard=40)
    args = [sys.executable, "-m", "datapruner.cli", "embed", str(src), "--model", "datapruner-tiny",
            "--pretrained", "none", "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "-q"]
    full = tmp_path / "full"
    subprocess.run(args + ["--out", str(full)], check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not _done_parts(killed, "embed"):
        assert proc.poll() is None, "embed finished before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _done_parts(killed, "embed")
    assert 0 < finished < 8, f"{finished} of 8 parts were done at the kill"
    subprocess.run(args + ["--out", str(killed)], check=True, capture_output=True)
    for sub in ("embeddings", "errors", "_done"):
        assert _tree(full, sub) == _tree(killed, sub)


def test_cli_refuses_pipe_sources_with_a_clear_message(tmp_path):
    result = CliRunner().invoke(app, ["embed", "pipe:curl -s http://x/{0..3}.tar", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--allow-pipe" in result.output


def test_rerun_with_other_shards_is_refused(tmp_path, shard_dir):
    run = tmp_path / "run"
    api.embed(str(shard_dir), run, Config(**TINY), progress=False)
    other = tmp_path / "other"
    write_shards(other, n_shards=1, per_shard=3)
    result = CliRunner().invoke(app, ["embed", str(other), "--out", str(run)])
    assert result.exit_code == 2 and "different shard list" in result.output


def test_a_file_that_is_not_a_tar_is_recorded_and_the_run_goes_on(tmp_path):
    src = tmp_path / "src"
    write_shards(src, n_shards=2, per_shard=5)
    (src / "zz-garbage.tar").write_bytes(b"this is not a tar archive at all" * 40)
    run = tmp_path / "run"
    summary = api.embed(str(src), run, Config(**TINY), progress=False)
    assert summary["counts"]["valid"] == 10 and summary["counts"]["errors"] == 1
    (error,) = pq.read_table(run / "errors/part-2.parquet").to_pylist()
    assert error["shard"].endswith("zz-garbage.tar") and "corrupt" in error["reason"]
    assert np.load(run / "embeddings/img_emb/img_emb_2.npy").shape == (0, 64)
    result = api.score(str(src), run, 0.5, Config(**TINY, clusters=2), progress=False)
    assert result["select"]["counts"] == {"samples": 11, "valid": 10, "invalid": 1, "kept": 5}


def test_two_runs_on_an_unidentifiable_image_write_identical_errors(tmp_path):
    good = [(f"g{i:03d}", sample_members(i, i % 4)) for i in range(4)]
    garbage = ("x001", {**sample_members(50, 1, "png"), "png": b"neither png nor anything else" * 4})
    write_tar(tmp_path / "src/00.tar", good[:2] + [garbage] + good[2:])
    for name in ("a", "b"):
        api.embed(str(tmp_path / "src"), tmp_path / name, Config(**TINY), progress=False)
    a, b = (tmp_path / n / "errors/part-0.parquet" for n in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    (row,) = pq.read_table(a).to_pylist()
    assert row["key"] == "x001" and " at 0x" not in row["reason"]
