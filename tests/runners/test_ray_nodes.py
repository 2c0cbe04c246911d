"""`datapruner score --ray-address` on a cluster of separate `ray start` nodes (tests/runners/ray_nodes.py): a
worker node lost (its raylet and workers SIGKILLed by pid) in the middle of embed, or of SemDeDup's dedup step,
does not stop the run: the other node takes the lost one's work (embed actors' batches, dedup tasks' retries),
and the run's files are byte-identical to the local runner's. A driver killed mid-dedup resumes to the same files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY
from ray_nodes import RayNodes
from shardmaker import write_shards

from datapruner import api
from datapruner.config import Config
from datapruner.io.rundir import RunDir

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

N_SHARDS = 8
COMPARED = ("embeddings", "clusters", "scores", "manifest", "shards")
RUN_TIMEOUT_S = 900  # a guard against a hang on a loaded machine, not a speed check


@pytest.fixture(scope="module")
def nodes():
    cluster = RayNodes(workers=2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_nodes_src")
    write_shards(root, n_shards=N_SHARDS, per_shard=40)
    return root


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, source) -> Path:
    run = tmp_path_factory.mktemp("ray_nodes_local") / "run"
    api.score(str(source), run, 0.3, Config(**TINY, clusters=4, shard_size=25), progress=False)
    return run


SLOW_DEDUP = Path(__file__).with_name("slow_dedup")  # its sitecustomize makes each dedup group take 1 s longer
DEDUP = {"clusters": 12, "filters": [{"name": "semdedup", "fraction": 0.1}],
         "metric_options": {"semdedup": {"max_rows": 1}}}  # one cluster a group: 12 dedup tasks


@pytest.fixture(scope="module")
def dedup_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray_nodes_cfg") / "dedup.yaml"
    runtime_env = {"env_vars": {"PYTHONPATH": str(SLOW_DEDUP), "DATAPRUNER_TEST_DEDUP_DELAY_S": "1"}}
    path.write_text(json.dumps({**DEDUP, "ray_runtime_env": runtime_env}))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def local_dedup_run(tmp_path_factory, source) -> Path:
    run = tmp_path_factory.mktemp("ray_nodes_local_dedup") / "run"
    cfg = Config(**{**TINY, "shard_size": 25, **DEDUP, "filters": tuple(DEDUP["filters"])})
    api.score(str(source), run, 0.3, cfg, progress=False)
    return run


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for sub in COMPARED for p in sorted((root / sub).rglob("*")) if p.is_file() and ".tmp-" not in p.name}


def cli_score(source: Path, run: Path, address: str, config: Path | None = None) -> list[str]:
    extra = ["--config", str(config)] if config else ["--clusters", "4"]
    return [sys.executable, "-m", "datapruner.cli", "score", str(source), "--keep", "0.3", "--out", str(run),
            "--model", "datapruner-tiny", "--pretrained", "none", "--batch-size", "8", "--num-workers", "0",
            "--device", "cpu", "--shard-size", "25", "--ray-address", address, "-q", *extra]


def marked(run: Path, step: str) -> int:
    rd = RunDir(run)
    return sum(1 for p in rd.marked_parts(step) if rd.read_marker(step, p))


def kill_a_node_during(step: str, cmd: list[str], run: Path, nodes: RayNodes) -> tuple[int, int]:
    """Run cmd; once a part of `step` is marked, kill worker node 0. (Parts marked at the kill, of how many.)"""
    proc = subprocess.Popen(cmd, env=nodes.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while marked(run, step) == 0:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, f"no part of {step} was done in time"
            time.sleep(0.05)
        killed = nodes.kill_worker(0)
        at_kill = marked(run, step)
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        proc.kill()  # a hung driver must not outlive the test
    assert proc.returncode == 0, out[-3000:]
    assert len(killed) >= 2, "the node's raylet was not among the killed processes"
    return at_kill, len(RunDir(run).marked_parts(step))


def test_a_node_lost_mid_embed_leaves_the_run_byte_identical(nodes, source, local_run, tmp_path):
    run = tmp_path / "run"
    at_kill, parts = kill_a_node_during("embed", cli_score(source, run, nodes.address), run, nodes)
    assert at_kill < parts == N_SHARDS, f"embed finished before the kill ({at_kill} shards)"
    assert tree(run) == tree(local_run)


def test_a_node_lost_mid_dedup_leaves_the_run_byte_identical(nodes, source, local_dedup_run, dedup_config, tmp_path):
    nodes.restart_worker(0)
    run = tmp_path / "run"
    at_kill, parts = kill_a_node_during("dedup", cli_score(source, run, nodes.address, dedup_config), run, nodes)
    assert at_kill < parts == 12, f"dedup finished before the kill ({at_kill} of {parts} groups)"
    assert tree(run) == tree(local_dedup_run)


def test_a_driver_killed_mid_dedup_resumes_byte_identical(nodes, source, local_dedup_run, dedup_config, tmp_path):
    """SIGKILL the `datapruner score` driver once a dedup group is done; the same command finishes the run."""
    nodes.restart_worker(0)
    run = tmp_path / "run"
    cmd = cli_score(source, run, nodes.address, dedup_config)
    proc = subprocess.Popen(cmd, env=nodes.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while marked(run, "dedup") == 0:
            assert proc.poll() is None and time.time() < deadline, "the run ended or stalled before dedup"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert marked(run, "dedup") < 12 and not (run / "manifest/keep.parquet").exists()
    again = subprocess.run(cmd, env=nodes.env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert tree(run) == tree(local_dedup_run)
