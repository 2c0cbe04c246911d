"""`datapruner --ray-address` against a real `ray start --head` cluster on 127.0.0.1, as docs/ray.md runs it.

The cluster is this module's own: its own port, temp dir and HOME (so its token is the one `ray start`
finds in that HOME's ~/.ray/auth_token, as a fresh head node's is). It runs with `--block`, and the
teardown stops that process and whatever is left of this cluster (processes naming its temp dir), by
pid: `ray stop` would stop every Ray on the machine, including the one other tests use.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import TINY
from shardmaker import write_shards

from datapruner import api
from datapruner.config import Config

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

RAY = str(Path(sys.executable).with_name("ray"))
N_SHARDS = 4
COMPARED = ("embeddings", "scores", "manifest", "shards")
START_TIMEOUT_S = 180
WAIT = "RAY_gcs_server_port_wait_time_s"  # how long ray.init waits for a cluster's GCS (Ray's default: 20 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def clean_env(home: Path) -> dict:
    """No RAY_* settings (no RAY_AUTH_MODE, no RAY_ADDRESS): what a user has after `pip install`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="dpray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    home = root / "home"
    home.mkdir()
    env = clean_env(home)
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    log = open(root / "ray-start.log", "wb")
    proc = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                             "--temp-dir", str(root / "t"), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--block"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + START_TIMEOUT_S
        while b"Ray runtime started" not in (root / "ray-start.log").read_bytes():
            assert proc.poll() is None, (root / "ray-start.log").read_text()[-3000:]
            assert time.time() < deadline, "ray start --head did not start in time"
            time.sleep(0.5)
        assert answers(port)
        yield {"address": f"127.0.0.1:{port}", "home": home, "root": root}
    finally:
        stop_cluster(proc, root)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def stop_cluster(proc: subprocess.Popen, root: Path) -> None:
    """`ray start --block` stops the processes it started when it gets SIGTERM; anything of this
    cluster still alive after that (its command line names our temp dir) is killed by pid."""
    import psutil

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.info["pid"] != os.getpid() and str(root) in " ".join(p.info["cmdline"] or []):
                p.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray_cluster_src")
    write_shards(root, n_shards=N_SHARDS, per_shard=20)
    return root


def cfg(runner: str = "local") -> Config:
    return Config(**TINY, clusters=4, shard_size=25, runner=runner)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for sub in COMPARED for p in sorted((root / sub).rglob("*")) if p.is_file() and ".tmp-" not in p.name}


def cli_score(source: Path, run: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "datapruner.cli", "score", str(source), "--keep", "0.3", "--out", str(run),
            "--model", "datapruner-tiny", "--pretrained", "none", "--batch-size", "8", "--num-workers", "0",
            "--device", "cpu", "--clusters", "4", "--shard-size", "25", "--ray-address", address, "-q"]


def test_cli_prunes_through_a_ray_start_head_cluster(cluster, source, tmp_path):
    """No RAY_AUTH_MODE set: the token `ray start` used is found the way Ray's CLI finds it."""
    local = tmp_path / "local"
    api.score(str(source), local, 0.3, cfg(), progress=False)
    run = tmp_path / "run"
    proc = subprocess.run(cli_score(source, run, cluster["address"]), env=clean_env(cluster["home"]),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert tree(run) == tree(local)


def test_a_refused_token_is_one_line_before_any_work(cluster, source, tmp_path):
    """A machine without the cluster's token: one line saying where to put it, not Ray's retry lines."""
    stranger = tmp_path / "home"
    stranger.mkdir()
    proc = subprocess.run(cli_score(source, tmp_path / "run", cluster["address"]), env=clean_env(stranger),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "InvalidAuthToken" not in proc.stderr, proc.stderr[-3000:]
    hint = [line for line in proc.stderr.splitlines() if "ray get-auth-token" in line]
    assert hint == proc.stderr.strip().splitlines() and "token" in hint[0], proc.stderr[-3000:]
    assert not (tmp_path / "run/embeddings").exists()


def test_joining_a_cluster_waits_connect_timeout_s_not_rays_20_s(monkeypatch):
    from datapruner.runners.ray import CONNECT_TIMEOUT_S, connect_timeout

    monkeypatch.delenv(WAIT, raising=False)
    with connect_timeout():
        assert os.environ[WAIT] == str(CONNECT_TIMEOUT_S)
    assert WAIT not in os.environ


def test_no_cluster_at_the_address_is_one_line_before_ray_is_joined(source, tmp_path):
    """The TCP probe refuses the address: ray.init, which would wait for the cluster, never runs."""
    proc = subprocess.run(cli_score(source, tmp_path / "run", f"127.0.0.1:{free_port()}"),
                          env=clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    hint = [line for line in proc.stderr.splitlines() if "ray start --head" in line]
    assert hint == proc.stderr.strip().splitlines() and "no Ray cluster answers at" in hint[0], proc.stderr[-3000:]
    assert not (tmp_path / "run/embeddings").exists()


NODES_WITHOUT_AUTH = """
import signal, sys, time
from ray.cluster_utils import Cluster
made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
for _ in range(2):
    made.add_node(num_cpus=1)
made.wait_for_nodes()
signal.signal(signal.SIGTERM, lambda *_: (made.shutdown(), sys.exit(0)))
open(sys.argv[1], "w").write(made.address)
time.sleep(3600)
"""
CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # where a head node without --temp-dir says it is


@pytest.fixture(scope="module")
def nodes_without_auth(tmp_path_factory):
    """A head and two worker nodes made by Ray's own test cluster (separate raylets), in a process of their own
    whose environment turns token authentication off (this process may have turned it on for another test)."""
    root = tmp_path_factory.mktemp("nodes_without_auth")
    (root / "home").mkdir()
    env = {**clean_env(root / "home"), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-c", NODES_WITHOUT_AUTH, str(root / "address")], env=env,
                            stdout=open(root / "log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + START_TIMEOUT_S
        while not (root / "address").exists():
            assert proc.poll() is None, (root / "log").read_text()[-3000:]
            assert time.time() < deadline, "the test cluster did not start in time"
            time.sleep(0.5)
        time.sleep(0.5)  # the address is written in one call; let it land
        yield (root / "address").read_text()
    finally:
        stop_test_cluster(proc, (root / "address").read_text() if (root / "address").exists() else None)


def stop_test_cluster(proc: subprocess.Popen, address: str | None) -> None:
    """Shut the test cluster down (SIGTERM: Cluster.shutdown), then kill what is left of its process group; a
    later ray.init() on this machine must not find it as "the current cluster"."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if address and CURRENT_CLUSTER.exists() and CURRENT_CLUSTER.read_text().strip() == address:
        CURRENT_CLUSTER.unlink()


def test_a_cluster_without_token_auth_works_from_a_machine_that_has_a_token(nodes_without_auth, cluster, source,
                                                                             tmp_path):
    """A token in ~/.ray/auth_token (this module's head node made one) must not switch token mode on for a
    cluster that does not use it: its actors would die before they start (ActorDiedError)."""
    local = tmp_path / "local"
    api.score(str(source), local, 0.3, cfg(), progress=False)
    run = tmp_path / "run"
    proc = subprocess.run(cli_score(source, run, nodes_without_auth), env=clean_env(cluster["home"]),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ActorDiedError" not in proc.stderr
    assert tree(run) == tree(local)
