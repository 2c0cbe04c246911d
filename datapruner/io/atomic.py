"""Atomic file writes: a temporary name beside the target, renamed into place only on success.

Temporary names are `.NAME.tmp-HOST-PID`, so the next run can tell a dead process's leftovers
(RunDir.remove_dead_temps) from a live writer's.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from datapruner.errors import DataprunerError, OutputError

FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
HOST = socket.gethostname().replace("-", "_")
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<host>[^-]+)-(?P<pid>\d+)$")


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{HOST}-{os.getpid()}")


class OutsideRun(DataprunerError):
    """A write under a run directory would land outside it: a folder on the way is a symbolic link."""


_CONFINED: set[str] = set()  # run directories (each RunDir registers its root): writes under one stay in it


def confine(root: str | Path) -> None:
    _CONFINED.add(os.path.abspath(root))


def refuse_escape(path: str | Path) -> None:
    """Raise OutsideRun when a folder between a run directory and `path` is a symbolic link."""
    target = os.path.abspath(path)
    for root in _CONFINED:
        if target.startswith(root + os.sep):
            folder = root
            for name in os.path.relpath(os.path.dirname(target), root).split(os.sep):
                folder = os.path.join(folder, name)
                if name not in (".", "") and os.path.islink(folder):
                    raise link_refused(Path(folder), Path(root))


def link_refused(link: Path, root: Path) -> OutsideRun:
    return OutsideRun(f"{link} is a symbolic link (to {os.readlink(link)}): datapruner writes only inside the run "
                      f"directory {root}, and a link there could lead its writes elsewhere; remove the link, or use "
                      "another --out")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it into place only if the block succeeds. A path
    whose folders under its run directory include a link is refused before anything is written."""
    path = Path(path)
    refuse_escape(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in FULL_OR_READ_ONLY:
            raise OutputError(f"cannot write {path}: {os.strerror(exc.errno)}; free space (or make it writable) "
                              "and rerun: finished parts are kept") from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_npy(path: str | Path, array) -> None:
    import numpy as np

    buf = io.BytesIO()  # np.save into a file reports a full disk without its errno
    np.save(buf, array)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def save_parquet(path: str | Path, table) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
