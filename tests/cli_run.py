"""The CLI as a real subprocess (as `python -m datapruner.cli`), reporting which heavy modules it imported.

A refusal, --help or --version comes before torch and open_clip are loaded: the tests assert that, what
happened, instead of a wall-clock limit that a loaded machine breaks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HEAVY = ("torch", "open_clip")
LAUNCH = f"""
import atexit, os, runpy, sys

def report_imports():
    with open(os.environ["DATAPRUNER_TEST_IMPORTS"], "w") as f:
        f.write(" ".join(m for m in {HEAVY!r} if m in sys.modules))

atexit.register(report_imports)
runpy.run_module("datapruner.cli", run_name="__main__", alter_sys=True)
"""


def run_cli(args: list[str], timeout: float = 60,
            env: dict | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """(the finished process, the heavy modules it had imported when it exited)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "imports"
        env = {**os.environ, **(env or {}), "DATAPRUNER_TEST_IMPORTS": str(report)}
        result = subprocess.run([sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, timeout=timeout,
                                env=env)
        return result, set(report.read_text().split())
