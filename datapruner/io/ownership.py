"""What datapruner may write: only inside RUN, and RUN must be new, empty, or a datapruner run that
does not overlap any input (shards, SRC's folder, precomputed embeddings)."""

from __future__ import annotations

import os
from pathlib import Path

from datapruner.errors import DataprunerError
from datapruner.io.atomic import link_refused
from datapruner.io.rundir import lock_or_temp, refuse_if_held


def local_path(url: str) -> Path | None:
    if url.startswith("pipe:"):
        return None
    if "://" in url:
        return Path(url.split("://", 1)[1]) if url.startswith("file://") else None
    return Path(url)


def check_out(out: Path, src: str | None = None, shards: list[str] = (), inputs: list[str] = ()) -> None:
    """Refuse an --out that is not ours to write, before anything is created."""
    root = out.resolve()
    if root.exists() and not root.is_dir():
        raise DataprunerError(f"--out {out} is a file, not a run directory")
    if root.is_dir() and not (root / "run.json").exists():
        refuse_if_held(root)  # another process is creating this run: name it, as its lock does
    if root.is_dir() and not (root / "run.json").exists() and any(not lock_or_temp(p.name) for p in root.iterdir()):
        raise DataprunerError(f"--out {out} is not empty and not a datapruner run: datapruner writes only into "
                              "a new or empty directory, or a run it made; choose another --out")
    if root.is_dir():
        refuse_links(out)
    folders = [p for p in (local_path(u) for u in [src or "", *inputs] if u) if p is not None and p.is_dir()]
    for folder in folders:
        _refuse_overlap(root, folder.resolve(), out)
    for shard in shards:
        path = local_path(shard)
        if path is not None and resolved(path).is_relative_to(root):
            raise DataprunerError(f"--out {out} holds the input shard {shard}: inputs are read-only; choose an "
                                  "--out outside the source")


def refuse_links(run: Path) -> None:
    """A symbolic link anywhere under RUN (RUN/shards or RUN/manifest replaced by a link to a user's folder,
    a linked file) is refused before anything is written: every write and removal stays inside RUN."""
    for folder, dirs, files in os.walk(run):
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(folder, name)):
                raise link_refused(Path(folder, name), run)


def resolved(path: Path) -> Path:
    """`path` with its links followed; a symlink loop (Path.resolve raises on one) stays as far as it got:
    opening it is what fails, and embed records that."""
    return Path(os.path.realpath(path))


def _refuse_overlap(root: Path, folder: Path, out: Path) -> None:
    if root.is_relative_to(folder) or folder.is_relative_to(root):
        raise DataprunerError(f"--out {out} overlaps the input folder {folder}: inputs are read-only; choose an "
                              "--out outside it")
