"""Run a datapruner command and SIGKILL it at a precise point of its work, as a machine dying there would.

    python tests/runs/killpoints.py POINT -- ARGS...      # ARGS as for `datapruner`

POINT is `unlink:GLOB:N` (killed right after the N-th removed file whose path ends like GLOB, e.g.
`shards/*.tar`) or `marker:STEP` (killed right after STEP's completion marker is written). The command
itself runs unchanged; the kill is a real SIGKILL, so nothing is cleaned up or flushed after it.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def after_unlinks(pattern: str, n: int) -> None:
    original, removed = Path.unlink, []

    def unlink(self, missing_ok: bool = False):
        original(self, missing_ok=missing_ok)
        if fnmatch.fnmatch(str(self), f"*/{pattern}"):
            removed.append(self)
            if len(removed) == n:
                die()
    Path.unlink = unlink


def after_marker(step: str) -> None:
    from datapruner.io.rundir import RunDir

    original = RunDir.write_marker

    def write_marker(self, name, part, token, outputs, digest=None):
        original(self, name, part, token, outputs, digest)
        if name == step:
            die()
    RunDir.write_marker = write_marker


def install(point: str) -> None:
    kind, _, rest = point.partition(":")
    if kind == "unlink":
        pattern, _, n = rest.rpartition(":")
        after_unlinks(pattern, int(n))
    elif kind == "marker":
        after_marker(rest)
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, separator, *args = sys.argv[1:]
    assert separator == "--", __doc__
    install(point)
    from datapruner.cli import main

    main(args)
