"""A Ray cluster of separate `ray start` processes on this machine: a head without CPUs (the driver's node)
and worker nodes with their own CPUs and a custom resource each (node0, node1, ...), so Ray tasks run
only on the workers and spread across them. A node is killed as a lost machine would be: its `ray start`
process, raylet and workers, by pid, with SIGKILL.

The cluster has its own port and temp dir, and no token authentication (RAY_AUTH_MODE=disabled in `env`, which
its nodes and a driver share; tests/runners/test_ray_cluster.py covers tokens); a driver joins it with `env` and
`address`. `stop` ends only this cluster's processes (their
command lines name its temp dir): `ray stop` would stop every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNodes:
    def __init__(self, workers: int, cpus_per_worker: int = 1):
        self.root = Path(tempfile.mkdtemp(prefix="dpnodes-", dir="/tmp"))  # short: socket paths have a limit
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env["RAY_AUTH_MODE"] = "disabled"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head = self.start("head", ["--head", "--port", str(self.port), "--temp-dir", str(self.root / "t"),
                                        "--num-cpus", "0", "--include-dashboard", "false"])
        self.cpus_per_worker = cpus_per_worker
        self.workers = [self.start_worker(i) for i in range(workers)]

    def start_worker(self, i: int) -> subprocess.Popen:
        return self.start(f"node{i}", ["--address", self.address, "--num-cpus", str(self.cpus_per_worker),
                                       "--resources", json.dumps({f"node{i}": 1})])

    def restart_worker(self, i: int) -> None:
        """A fresh node i, if the last one was killed (a replacement machine joining)."""
        if self.workers[i].poll() is not None:
            self.workers[i] = self.start_worker(i)

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = self.root / f"{name}.{len(list(self.root.glob(f'{name}.*.log')))}.log"  # a restarted node: a new log
        proc = subprocess.Popen([RAY, "start", *args, "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                                 "--block"], env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.time() + START_TIMEOUT_S
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"ray start {name} failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        return proc

    def kill_worker(self, i: int) -> list[int]:
        """SIGKILL worker node i's `ray start`, raylet and workers (every descendant); their pids."""
        procs = [psutil.Process(self.workers[i].pid)]
        procs += procs[0].children(recursive=True)
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.workers[i].wait()
        return [p.pid for p in procs]

    def stop(self) -> None:
        for proc in [getattr(self, "head", None), *getattr(self, "workers", [])]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [getattr(self, "head", None), *getattr(self, "workers", [])]:
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if p.info["pid"] != os.getpid() and str(self.root) in " ".join(p.info["cmdline"] or []):
                    p.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
