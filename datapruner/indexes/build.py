"""`datapruner index RUN --format F [--out DIR]`: one loader's index of the finished selection.

The files go to DIR, or to RUN/indexes/F/. The folder holds `index.json`, the record of what datapruner
wrote there: a later index into it replaces only those files, and a folder holding anything else is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datapruner.errors import DataprunerError
from datapruner.indexes.dali import write_dali
from datapruner.indexes.energon import write_energon
from datapruner.indexes.manifest import selection
from datapruner.indexes.wids import write_wids
from datapruner.io.atomic import write_json
from datapruner.io.ownership import local_path, refuse_links, resolved
from datapruner.io.rundir import RunDir

FORMATS = ("dali", "wids", "energon", "uids")
RECORD = "index.json"


def build_index(root: str | Path, fmt: str, out: str | Path | None = None) -> dict:
    """Write the index; returns its summary (format, folder, kept samples, files)."""
    run = RunDir(root)
    run.read_run_json()
    if fmt not in FORMATS:
        raise DataprunerError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if fmt == "uids":
        return uids(run)
    folder = Path(out) if out is not None else run.root / "indexes" / fmt
    with run.lock("index"):
        refuse_links(run.root)
        keys = selection(run)
        _refuse_source_folder(folder, list(keys))
        _clear(folder)
        summary = _write(fmt, keys, folder, run)
        files = sorted(p.name for p in folder.iterdir() if p.name != RECORD)
        record = {"format": fmt, "run": str(run.root.resolve()), **summary, "files": files}
        write_json(folder / RECORD, record)
    return {**record, "folder": str(folder)}


def _write(fmt: str, keys: dict, folder: Path, run: RunDir) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "dali":
        return write_dali(keys, folder)
    if fmt == "wids":
        return write_wids(keys, folder, run.root.resolve().name)
    return write_energon(keys, folder)


def uids(run: RunDir) -> dict:
    """DataComp's subset by value is RUN/manifest/keep_uids.npy, which select writes: named, not copied."""
    if not run.keep_uids.exists():
        raise DataprunerError(f"{run.keep_uids} does not exist: the kept samples have no hex uid (docs/outputs.md), "
                              "or select has not run")
    count = len(np.load(run.keep_uids, mmap_mode="r"))
    return {"format": "uids", "folder": str(run.manifest_dir), "samples": count, "files": [run.keep_uids.name]}


def _clear(folder: Path) -> None:
    """Remove what the folder's record says datapruner wrote there; refuse a folder holding anything else."""
    if not folder.exists():
        return
    record = folder / RECORD
    ours = set(json.loads(record.read_text()).get("files", [])) | {RECORD} if record.exists() else set()
    others = sorted(p.name for p in folder.iterdir() if p.name not in ours)
    if others:
        raise DataprunerError(f"{folder} holds {others[0]!r}, which datapruner did not write there: an index goes "
                              "into a new or empty folder, or one an earlier index wrote; choose another --out")
    for name in ours:
        (folder / name).unlink(missing_ok=True)


def _refuse_source_folder(folder: Path, shards: list[str]) -> None:
    """Inputs are read-only: no index is written among the source shards."""
    target = resolved(folder.absolute())
    for shard in shards:
        path = local_path(shard)
        if path is not None and (target.is_relative_to(resolved(path.parent.absolute()))
                                 or resolved(path.absolute()).is_relative_to(target)):
            raise DataprunerError(f"--out {folder} holds the source shard {shard}: inputs are read-only; choose an "
                                  "--out outside the source")
