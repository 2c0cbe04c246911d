"""The run directory (docs/design.md). Only this module spells paths inside RUN.

It also keeps the completion markers (`_done/<step>/<part>`: JSON with the input token, the files
the part wrote, and for barriers a digest of them) and the lock that lets one process write a RUN.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from datapruner.errors import DataprunerError, RunInUse
from datapruner.io.atomic import HOST, TEMP_NAME, confine, pid_alive, temp_path, write_json

LOCK = "_lock"


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._info: dict | None = None
        confine(self.root)  # every write under RUN stays inside it (io/atomic.py)

    # run.json ---------------------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def exists(self) -> bool:
        return self.run_json.exists()

    def read_run_json(self) -> dict:
        """run.json, read once per RunDir (it holds the whole shard list; paths are asked for per part).
        Only the process holding the run's lock changes it, through update_run_json."""
        if self._info is None:
            if not self.run_json.exists():
                raise DataprunerError(f"{self.root} is not a datapruner run directory (no run.json); "
                                      "run `datapruner embed` or `datapruner score` first")
            self._info = json.loads(self.run_json.read_text())
        return self._info

    def update_run_json(self, **fields) -> None:
        info = {**(_load_json(self.run_json) or {}), **fields}
        write_json(self.run_json, info)
        self._info = info

    def shards(self) -> list[str]:
        return self.read_run_json()["shards"]

    def shard_of(self, part: str) -> str:
        return self.shards()[int(part)]

    def part_ids(self) -> list[str]:
        """Zero-padded part ids of the input shards, in sorted shard order."""
        n = len(self.shards())
        return [part_id(i, n) for i in range(n)]

    # embeddings (the run's own; runs made before precomputed embeddings were joined may link a folder) -----
    @property
    def own_embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def embeddings_root(self) -> Path:
        linked = self.read_run_json().get("embeddings_dir") if self.exists() else None
        return Path(linked) if linked else self.own_embeddings

    def img_emb(self, part: str, root: Path | None = None) -> Path:
        return (root or self.embeddings_root) / f"img_emb/img_emb_{part}.npy"

    def text_emb(self, part: str, root: Path | None = None) -> Path:
        return (root or self.embeddings_root) / f"text_emb/text_emb_{part}.npy"

    def metadata(self, part: str, root: Path | None = None) -> Path:
        return (root or self.embeddings_root) / f"metadata/metadata_{part}.parquet"

    # precomputed embeddings joined to the shards (embed/join.py): RUN/join/, removed by nothing but the loop
    @property
    def precomputed(self) -> dict | None:
        """The precomputed layout recorded when the command started (embed/layouts.Layout), or None."""
        return self.read_run_json().get("precomputed") if self.exists() else None

    def join_index(self, source_part: str) -> Path:
        """One source part's rows (join value, row, its metadata), one row group per hash bucket."""
        return self.root / f"join/index/part-{source_part}.parquet"

    def join_samples(self, part: str) -> Path:
        """One input shard's samples as scanned (metadata columns, position, join value)."""
        return self.root / f"join/samples/samples_{part}.parquet"

    def join_scan_errors(self, part: str) -> Path:
        return self.root / f"join/samples/errors_{part}.parquet"

    def join_sample_index(self, part: str) -> Path:
        """One input shard's (join value, position), one row group per hash bucket."""
        return self.root / f"join/samples/index_{part}.parquet"

    def join_matches(self, bucket: str) -> Path:
        """One bucket's matches (shard, position, source part, row, source metadata), a row group per shard."""
        return self.root / f"join/matches/bucket-{bucket}.parquet"

    @property
    def errors_dir(self) -> Path:
        return self.root / "errors"

    def errors(self, part: str) -> Path:
        return self.errors_dir / f"part-{part}.parquet"

    # cluster, assign, metrics, scores -----------------------------------------------------------------
    @property
    def centroids(self) -> Path:
        return self.root / "clusters/centroids.npy"

    def assigned_cluster(self, part: str) -> Path:
        return self.root / f"clusters/assign/cluster_{part}.npy"

    def assigned_dist(self, part: str) -> Path:
        return self.root / f"clusters/assign/dist_{part}.npy"

    def assigned_by_cluster(self, part: str) -> Path:
        """The part's rows in cluster order: (2, n) int32, the sorted cluster ids over their rows (ties by row)."""
        return self.root / f"clusters/assign/bycluster_{part}.npy"

    def metric_dir(self, name: str) -> Path:
        """Fitted state of one metric (e.g. EL2N's probes)."""
        return self.root / f"metrics/{name}"

    def scores(self, part: str) -> Path:
        return self.root / f"scores/part-{part}.parquet"

    # manifest, write, report ------------------------------------------------------------------------
    @property
    def manifest_dir(self) -> Path:
        return self.root / "manifest"

    @property
    def keep_parquet(self) -> Path:
        return self.manifest_dir / "keep.parquet"

    @property
    def keep_uids(self) -> Path:
        return self.manifest_dir / "keep_uids.npy"

    @property
    def summary_json(self) -> Path:
        return self.manifest_dir / "summary.json"

    def budget_clusters(self, budget: str) -> Path:
        return self.manifest_dir / f"{budget}_clusters.parquet"

    @property
    def write_plan(self) -> Path:
        return self.manifest_dir / "write_plan.parquet"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    def shard(self, name: str) -> Path:
        """Output shard `name` (an `output_name`), as img2dataset lays a folder out: NAME.tar, NAME.parquet
        (its rows) and NAME_stats.json beside it, and sizes.json for the folder."""
        return self.shards_dir / f"{name}.tar"

    def shard_stats(self, name: str) -> Path:
        return self.shards_dir / f"{name}_stats.json"

    def shard_parquet(self, name: str) -> Path:
        return self.shards_dir / f"{name}.parquet"

    @property
    def sizes_json(self) -> Path:
        """{shard file name: samples}, read by open_clip's get_dataset_size and DataComp's resharder."""
        return self.shards_dir / "sizes.json"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report_html(self) -> Path:
        return self.report_dir / "index.html"

    @property
    def verify_dir(self) -> Path:
        return self.root / "verify"

    @property
    def verify_test_run(self) -> Path:
        return self.verify_dir / "test_run"

    # completion markers -------------------------------------------------------------------------------
    def marker(self, step: str, part: str) -> Path:
        return self.root / f"_done/{step}/{part}"

    def read_marker(self, step: str, part: str) -> dict | None:
        """The marker's record, or None when the part is not done (not begun, only begun: an intent, or
        marked by an older layout)."""
        record = _load_json(self.marker(step, part))
        return record if isinstance(record, dict) and record.get("token") is not None else None

    def marked_parts(self, step: str) -> list[str]:
        """Parts with a marker (done, or begun: an intent)."""
        folder = self.root / f"_done/{step}"
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []

    def rename_step_markers(self, renamed: dict[str, str]) -> None:
        """Markers written under a step's former name move to its current one ({old: new}), so a run made
        before the rename resumes instead of finding its own files in the way."""
        for old, new in renamed.items():
            before, after = self.root / f"_done/{old}", self.root / f"_done/{new}"
            if before.is_dir() and not after.exists():
                before.rename(after)

    def write_marker(self, step: str, part: str, token: str, outputs: list[Path], digest: str | None = None) -> None:
        rel = sorted(str(p.relative_to(self.root)) for p in outputs if p.exists())
        write_json(self.marker(step, part), {"token": token, "outputs": rel, "digest": digest})

    def sweep_flag(self, step: str) -> Path:
        """There while the sweep that ends `step` (removing what it made stale) is not finished: the step
        is not over, and the next run of it finishes the sweep."""
        return self.root / f"_done/{step}/.sweep"

    def sweep_pending(self, step: str) -> bool:
        return self.sweep_flag(step).exists()

    def begin_sweep(self, step: str) -> None:
        write_json(self.sweep_flag(step), {"step": step})

    def end_sweep(self, step: str) -> None:
        self.sweep_flag(step).unlink(missing_ok=True)

    def write_intent(self, step: str, part: str, outputs: list[Path]) -> None:
        """Before a part runs: the files it is about to write, so that a kill leaves them recorded as ours."""
        rel = sorted(str(p.relative_to(self.root)) for p in outputs)
        write_json(self.marker(step, part), {"token": None, "outputs": rel, "digest": None})

    def drop_part(self, step: str, part: str) -> list[str]:
        """Delete what the part's marker records writing (only inside RUN), then the marker. Returns the files."""
        record = _load_json(self.marker(step, part))
        removed = []
        for rel in record.get("outputs", []) if isinstance(record, dict) else []:
            path = (self.root / rel).resolve()
            if not path.is_relative_to(self.root.resolve()) or path == self.root.resolve():
                continue
            if path.is_dir():
                shutil.rmtree(path)
                removed.append(rel)
            elif path.is_file():
                path.unlink()
                removed.append(rel)
        self.marker(step, part).unlink(missing_ok=True)
        return removed

    # one writer at a time -----------------------------------------------------------------------------
    @contextmanager
    def lock(self, command: str, scope: str | None = None) -> Iterator[None]:
        """Hold RUN/_lock while `command` writes; a live holder → RunInUse, a dead one's lock is taken over.

        An orchestrator's task that runs a few parts of a map step passes `scope` (e.g. "embed-0-7"):
        such tasks share the run with each other, never with a whole-run command.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / (LOCK if scope is None else f"{LOCK}.{scope}")
        holder = {"pid": os.getpid(), "host": HOST, "command": command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _take(path, holder)
        try:
            others = [p for p in self.root.glob(f"{LOCK}.*")] if scope is None else [self.root / LOCK]
            for other in others:
                current = _load_json(other)
                if current and not _dead(current):
                    raise _in_use(self.root, current, other)
            self.remove_dead_temps(any_host=scope is None)
            yield
        finally:
            path.unlink(missing_ok=True)

    def remove_dead_temps(self, any_host: bool = True) -> int:
        """Temp files of processes that are gone: on this host, those whose pid is not alive; with
        `any_host` (we hold the whole-run lock, so no other writer exists) every other process's too."""
        removed = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                m = TEMP_NAME.match(name)
                if not m or (m["host"] == HOST and int(m["pid"]) == os.getpid()):
                    continue
                if (m["host"] == HOST and not pid_alive(int(m["pid"]))) or (any_host and m["host"] != HOST):
                    Path(folder, name).unlink(missing_ok=True)
                    removed += 1
        return removed


def refuse_if_held(root: Path) -> None:
    """RunInUse when a live process holds RUN's lock (or one of its groups'), with the lock's own message."""
    for path in [root / LOCK, *sorted(root.glob(f"{LOCK}.*"))]:
        holder = _load_json(path)
        if holder and not _dead(holder):
            raise _in_use(root, holder, path)


def lock_or_temp(name: str) -> bool:
    """A lock or a temp file: all a process creating a run has written before its run.json."""
    return name == LOCK or name.startswith(f"{LOCK}.") or TEMP_NAME.match(name) is not None


def _take(path: Path, holder: dict) -> None:
    """Create `path` holding `holder`, atomically (a hard link of a complete temp file)."""
    tmp = temp_path(path)
    tmp.write_text(json.dumps(holder))
    try:
        for _ in range(3):
            try:
                os.link(tmp, path)
                return
            except FileExistsError:
                current = _load_json(path)
                if current is None or not _dead(current):
                    raise _in_use(path.parent, current, path) from None
                path.unlink(missing_ok=True)  # a killed holder's lock: take it over
        raise _in_use(path.parent, _load_json(path), path)
    finally:
        tmp.unlink(missing_ok=True)


def _in_use(root: Path, holder: dict | None, lock: Path) -> RunInUse:
    who = (f"pid {holder['pid']} on {holder['host']} ({holder.get('command', '?')}, since {holder.get('since', '?')})"
           if holder else "another process")
    return RunInUse(f"{root} is in use by {who}, which holds its lock {lock.name}; wait for it to finish, or use "
                    "another --out")


def _load_json(path: Path):
    """The file's JSON, or None when it is missing or not JSON (e.g. an older layout's marker)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _dead(holder: dict) -> bool:
    return holder.get("host") == HOST and not pid_alive(int(holder.get("pid", 0)))


def output_name(j: int, prefix: str = "", digits: int = 6) -> str:
    """Output shard j's file stem: `{prefix}{j:0{digits}d}` (img2dataset writes 5 digits, DataComp 8)."""
    return f"{prefix}{j:0{digits}d}"


def part_id(index: int, count: int) -> str:
    """The shard index zero-padded to the width of the count."""
    return f"{index:0{len(str(count))}d}"
