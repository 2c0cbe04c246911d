"""One process writes a RUN at a time; a killed holder's lock and temp files do not outlive it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_run import run_cli
from shardmaker import write_shards

from datapruner.io.atomic import HOST

ARGS = ["--keep", "0.3", "--model", "datapruner-tiny", "--pretrained", "none", "--batch-size", "4",
        "--num-workers", "0", "--device", "cpu", "--clusters", "3", "--shard-size", "20", "-q"]
OUTPUTS = ("embeddings", "errors", "clusters", "scores", "manifest", "shards", "_done")


def score_args(src: Path, run: Path) -> list[str]:
    return ["score", str(src), "--out", str(run), *ARGS]


def score(src: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "datapruner.cli", *score_args(src, run)]


def tree(run: Path) -> dict[str, bytes]:
    root = str(run).encode()
    return {str(p.relative_to(run)): p.read_bytes().replace(root, b"RUN")
            for sub in OUTPUTS for p in sorted((run / sub).rglob("*")) if p.is_file()}


def wait_for(condition, proc, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the first run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_second_writer_is_refused_and_a_killed_one_resumes_identically(tmp_path):
    src = tmp_path / "src"
    write_shards(src, n_shards=6, per_shard=40)
    full = tmp_path / "full"
    subprocess.run(score(src, full), check=True, capture_output=True)

    run = tmp_path / "run"
    first = subprocess.Popen(score(src, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (run / "_done/embed").is_dir() and any((run / "_done/embed").iterdir()), first,
             "it began embedding")  # the intents are written: the lock is held
    second, imported = run_cli(score_args(src, run))
    assert second.returncode == 2
    assert not imported, f"refused only after importing {imported}"  # the refusal comes before any work
    message = second.stderr.strip().splitlines()
    assert len(message) == 1 and f"pid {first.pid}" in message[0] and "in use" in message[0]

    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert (run / "_lock").exists()  # the dead holder's lock is still there
    stray = run / f"embeddings/img_emb/.img_emb_9.npy.tmp-{HOST}-999999"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"a dead process's half-written part")
    subprocess.run(score(src, run), check=True, capture_output=True)
    assert tree(run) == tree(full)
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name] and not (run / "_lock").exists()


def test_a_new_out_another_process_is_creating_is_refused_naming_its_lock_and_pid(tmp_path):
    """Two commands started at once on a new --out: the second finds the first's lock (and its temp file)
    but no run.json yet, and is refused with the lock's own message, not as a folder that is not a run."""
    import json

    from datapruner.io.ownership import check_out

    src = tmp_path / "src"
    write_shards(src, n_shards=1, per_shard=4)
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / "_lock").write_text(json.dumps({"pid": holder.pid, "host": HOST, "command": "score",
                                               "since": "2026-01-01T00:00:00"}))
        (run / f".run.json.tmp-{HOST}-{holder.pid}").write_text("{")
        before = sorted(p.name for p in run.iterdir())
        second, imported = run_cli(score_args(src, run))
        assert second.returncode == 2 and not imported
        message = second.stderr.strip().splitlines()
        assert len(message) == 1 and f"pid {holder.pid}" in message[0] and "_lock" in message[0]
        assert "in use" in message[0] and "not a datapruner run" not in message[0]
        assert sorted(p.name for p in run.iterdir()) == before
    finally:
        holder.kill()
        holder.wait()
    check_out(run)  # the holder is dead: its lock and temp file are no one's, and the lock is taken over
