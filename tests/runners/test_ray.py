"""The Ray runner on a real local Ray (2 CPUs): same bytes as the local runner, and resumption after kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TINY
from shardmaker import write_shards

from datapruner import api
from datapruner.config import Config

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

N_SHARDS = 8
COMPARED = ("embeddings", "scores", "manifest", "shards")


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module; drivers in subprocesses join it by its address."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_src")
    write_shards(root, n_shards=N_SHARDS, per_shard=40)
    return root


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, source) -> Path:
    run = tmp_path_factory.mktemp("ray_local") / "run"
    api.score(str(source), run, 0.3, _cfg("local"), progress=False)
    return run


def _cfg(runner: str) -> Config:
    return Config(**TINY, clusters=4, shard_size=25, runner=runner)


def _tree(root: Path) -> dict[str, bytes]:
    """The run's outputs, byte for byte (run.json differs: it records the runner)."""
    return {str(p.relative_to(root)): p.read_bytes()
            for sub in COMPARED for p in sorted((root / sub).rglob("*")) if p.is_file() and ".tmp-" not in p.name}


def _markers(run: Path, step: str) -> int:
    """Parts marked done (intents, written before a part runs, do not count)."""
    from datapruner.io.rundir import RunDir

    rd = RunDir(run)
    return sum(1 for p in rd.marked_parts(step) if rd.read_marker(step, p))


def _cli_score(source: Path, run: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "datapruner.cli", "score", str(source), "--keep", "0.3", "--out", str(run),
            "--model", "datapruner-tiny", "--pretrained", "none", "--batch-size", "8", "--num-workers", "0",
            "--device", "cpu", "--clusters", "4", "--shard-size", "25", "--ray-address", address, "-q"]


def _wait_for(condition, exit_code, what: str, timeout: float = 600) -> None:
    """A guard against a hang, not a speed check: a loaded machine may take minutes to embed a shard."""
    deadline = time.time() + timeout
    while not condition():
        assert exit_code() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_ray_score_is_byte_identical_to_local(ray_address, local_run, source, tmp_path):
    run = tmp_path / "run"
    summary = api.score(str(source), run, 0.3, _cfg("ray"), progress=False)

    assert summary["embed"]["shards"] == N_SHARDS
    assert summary["measure"]["parts"] == N_SHARDS and summary["measure"]["parts_reused"] == 0
    assert _tree(run) == _tree(local_run)
    again = api.score(str(source), run, 0.3, _cfg("ray"), progress=False)
    assert again["measure"]["parts_reused"] == N_SHARDS and again["write"]["parts_reused"] == again["write"]["parts"]


def test_killed_ray_driver_reruns_to_identical_files(ray_address, local_run, source, tmp_path):
    """SIGKILL the `datapruner score --ray-address` driver once some shards are embedded, then rerun."""
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli_score(source, run, ray_address), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: _markers(run, "embed") > 0, proc.poll, "the first shard was embedded")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = _markers(run, "embed")
    assert 0 < finished < N_SHARDS, f"{finished} of {N_SHARDS} shards were embedded at the kill"
    assert not (run / "manifest/keep.parquet").exists()

    rerun = api.score(str(source), run, 0.3, _cfg("ray"), progress=False)
    assert rerun["embed"]["shards"] == N_SHARDS - finished
    assert _tree(run) == _tree(local_run)


def test_killed_embed_actors_are_restarted_and_the_run_finishes_identical(ray_address, local_run, source, tmp_path):
    """SIGKILL the embed actors' worker processes mid-run: Ray restarts them, finished shards are not redone."""
    run = tmp_path / "run"
    killed_at = []
    killer = threading.Thread(target=_kill_embed_actors_after_first_shard, args=(run, killed_at), daemon=True)
    killer.start()
    summary = api.score(str(source), run, 0.3, _cfg("ray"), progress=False)
    killer.join(timeout=5)
    assert killed_at, "the embed actors were never killed"
    if killed_at[0] == N_SHARDS:
        pytest.skip("the embed step finished before the kill")
    # a part marked just before its actor died is skipped by the retried call, not counted twice
    assert summary["embed"]["shards"] <= N_SHARDS and _markers(run, "embed") == N_SHARDS
    assert _tree(run) == _tree(local_run)


def _kill_embed_actors_after_first_shard(run: Path, killed_at: list) -> None:
    _wait_for(lambda: _markers(run, "embed") > 0 and _embed_actor_pids(), lambda: None, "an embedded shard")
    for pid in _embed_actor_pids():
        os.kill(pid, signal.SIGKILL)
    killed_at.append(_markers(run, "embed"))


def _embed_actor_pids() -> list[int]:
    """Worker processes of this test's Ray (our descendants) that host an embed actor (runners.ray.Worker)."""
    import psutil

    pids = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "ray::Worker" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids
