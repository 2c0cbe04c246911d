"""The write map step: each pruned shard is a copy of its kept samples' byte ranges, then two zero blocks."""

from __future__ import annotations

import hashlib
from functools import partial
from itertools import groupby

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.io.rundir import RunDir, atomic_path, write_json
from datapruner.io.shards import open_shard
from datapruner.io.tar_samples import iter_samples

STEP = "write"
END_OF_ARCHIVE = b"\0" * 1024


def write_plan(run: RunDir) -> pa.Table:
    """Kept rows in source order (shard index, then offset), with byte ranges filled in."""
    manifest = pq.read_table(run / "manifest/keep.parquet", columns=["shard", "key", "kept", "offset", "length"])
    kept = manifest.filter(manifest.column("kept")).drop_columns(["kept"])
    kept = _fill_missing_ranges(kept)
    order = {url: i for i, url in enumerate(run.shards())}
    shard_index = pa.array([order[s] for s in kept.column("shard").to_pylist()], pa.int64())
    return kept.append_column("shard_index", shard_index).sort_by([("shard_index", "ascending"), ("offset", "ascending")])


def _fill_missing_ranges(kept: pa.Table) -> pa.Table:
    """Precomputed embeddings carry no byte ranges: find them by one scan of each source shard."""
    missing = pc.is_null(kept.column("offset"))
    if not pc.any(missing).as_py():
        return kept
    offsets, lengths = kept.column("offset").to_pylist(), kept.column("length").to_pylist()
    shards, keys = kept.column("shard").to_pylist(), kept.column("key").to_pylist()
    for shard in sorted({s for s, m in zip(shards, missing.to_pylist()) if m}):
        with open_shard(shard) as stream:
            ranges = {s.key: (s.offset, s.length) for s in iter_samples(stream) if s.error is None}
        for i, (s, key) in enumerate(zip(shards, keys)):
            if s == shard and offsets[i] is None:
                if key not in ranges:
                    raise ValueError(f"kept sample {key!r} is not in {shard}: the embeddings do not match the shards")
                offsets[i], lengths[i] = ranges[key]
    return kept.set_column(kept.schema.get_field_index("offset"), "offset", pa.array(offsets, pa.int64())) \
               .set_column(kept.schema.get_field_index("length"), "length", pa.array(lengths, pa.int64()))


def manifest_token(run: RunDir, shard_size: int) -> str:
    digest = hashlib.sha256((run / "manifest/keep.parquet").read_bytes()).hexdigest()[:16]
    return f"{digest}|{shard_size}"


def shard_path(run: RunDir, j: int):
    return run / f"shards/{j:06d}.tar"


def write_one(j: int, run_root: str, plan_path: str, shard_size: int, token: str) -> int:
    """Output shard j holds plan rows [j·S, (j+1)·S). Returns its sample count, -1 when reused."""
    run = RunDir(run_root)
    if run.is_done(STEP, f"{j:06d}", token):
        return -1
    rows = pq.read_table(plan_path).slice(j * shard_size, shard_size)
    sources = []
    with atomic_path(shard_path(run, j)) as tmp, open(tmp, "wb") as out:
        for shard, group in groupby(zip(rows.column("shard").to_pylist(), rows.column("offset").to_pylist(),
                                        rows.column("length").to_pylist()), key=lambda r: r[0]):
            _copy_ranges(shard, [(o, n) for _, o, n in group], out)
            sources.append(shard)
        out.write(END_OF_ARCHIVE)
    size = shard_path(run, j).stat().st_size
    write_json(run / f"shards/{j:06d}_stats.json", {"samples": rows.num_rows, "bytes": size, "sources": sources})
    run.mark_done(STEP, f"{j:06d}", token)
    return rows.num_rows


def _copy_ranges(shard: str, ranges: list[tuple[int, int]], out) -> None:
    """Ranged reads of one source; adjacent samples are read as one range."""
    with fsspec.open(shard, "rb") as src:
        for start, length in _merged(ranges):
            src.seek(start)
            data = src.read(length)
            if len(data) != length:
                raise IOError(f"{shard}: expected {length} bytes at offset {start}, got {len(data)}")
            out.write(data)


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, length in ranges:
        if merged and merged[-1][0] + merged[-1][1] == start:
            merged[-1][1] += length
        else:
            merged.append([start, length])
    return [(s, n) for s, n in merged]


def plan_write(run: RunDir, shard_size: int) -> tuple[str, int, int]:
    """The write barrier: (plan path, kept samples, output shard count); removes shards beyond that count.
    Idempotent: every call for the same manifest writes the same plan."""
    plan = write_plan(run)
    plan_path = run / "manifest/write_plan.parquet"
    with atomic_path(plan_path) as tmp:
        pq.write_table(plan, tmp)
    n_out = int(np.ceil(plan.num_rows / shard_size)) if plan.num_rows else 0
    _remove_stale_shards(run, n_out)
    return str(plan_path), plan.num_rows, n_out


def write_shards(run: RunDir, shard_size: int, runner, progress: bool = True, parts: list[int] | None = None) -> dict:
    """Every output shard, or only those with these indices."""
    plan_path, samples, n_out = plan_write(run, shard_size)
    token = manifest_token(run, shard_size)
    fn = partial(write_one, run_root=str(run.root), plan_path=plan_path, shard_size=shard_size, token=token)
    todo = range(n_out) if parts is None else [j for j in sorted(set(parts)) if j < n_out]
    counts = runner.map(fn, todo, "write", progress)
    return {"shards": n_out, "samples": samples, "shards_written": len(todo),
            "shards_reused": sum(1 for c in counts if c < 0)}


def _remove_stale_shards(run: RunDir, n_out: int) -> None:
    """A previous write with more output shards must not leave extra shards behind."""
    for path in sorted((run / "shards").glob("*.tar")):
        if path.stem.isdigit() and int(path.stem) >= n_out:
            path.unlink()
            (run / f"shards/{path.stem}_stats.json").unlink(missing_ok=True)
