"""A full disk under --out: one line saying so, nothing half-written kept, and once space is freed the
rerun gives exactly what an uninterrupted run gives."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from shardmaker import write_shards

COMPARED = ("embeddings", "errors", "scores", "manifest", "shards")


def score_args(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "datapruner.cli", "score", str(src), "--keep", "0.5", "--model", "datapruner-tiny",
            "--pretrained", "none", "--batch-size", "8", "--num-workers", "0", "--device", "cpu", "--clusters", "3",
            "--shard-size", "10", "-q", "--out", str(out)]


def tmpfs_bytes(run: Path) -> int:
    """What the run occupies on a tmpfs (whole 4 KiB pages per file)."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in run.rglob("*") if p.is_file())


@contextmanager
def small_disk(where: Path, size: int, biggest_file: int):
    """A tmpfs of `size` bytes at `where`, yielding a function that grows it (frees space). Without the
    right to mount, each file is limited to half the biggest one instead (RLIMIT_FSIZE: EFBIG, also a
    full disk to the writer) and freeing space lifts the limit."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True).returncode == 0
    limit = {"bytes": None if mounted else biggest_file // 2}

    def free_space():
        if mounted:
            subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(where)], check=True)
        limit["bytes"] = None

    def preexec():
        if limit["bytes"] is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit["bytes"], limit["bytes"]))

    try:
        yield free_space, preexec
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], check=True)


def test_a_full_disk_is_one_line_and_the_rerun_matches_an_uninterrupted_run(tmp_path):
    src = tmp_path / "src"
    write_shards(src, n_shards=4, per_shard=30)
    reference = tmp_path / "reference"
    subprocess.run(score_args(src, reference), check=True, capture_output=True)
    biggest = max(p.stat().st_size for p in reference.rglob("*") if p.is_file())
    with small_disk(tmp_path / "disk", tmpfs_bytes(reference) * 6 // 10, biggest) as (free_space, preexec):
        out = tmp_path / "disk/run"
        failed = subprocess.run(score_args(src, out), capture_output=True, text=True, preexec_fn=preexec)
        assert failed.returncode != 0
        assert "Traceback" not in failed.stderr, failed.stderr
        errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(out) in errors[0], failed.stderr
        assert "No space left on device" in errors[0] or "File too large" in errors[0], errors[0]
        assert not [p for p in out.rglob(".*tmp-*")], "a half-written file was left behind"
        free_space()
        subprocess.run(score_args(src, out), check=True, capture_output=True, preexec_fn=preexec)
        for folder in COMPARED:
            expected = {p.relative_to(reference): p.read_bytes() for p in (reference / folder).rglob("*") if p.is_file()}
            got = {p.relative_to(out): p.read_bytes() for p in (out / folder).rglob("*") if p.is_file()}
            assert got == expected, folder
