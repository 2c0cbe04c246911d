"""The write map step: each pruned shard is a copy of its kept samples' byte ranges, then two zero blocks."""

from __future__ import annotations

from itertools import groupby

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError
from datapruner.io.atomic import atomic_path, write_json
from datapruner.io.rundir import RunDir
from datapruner.io.shards import open_shard
from datapruner.io.tar_samples import iter_samples

END_OF_ARCHIVE = b"\0" * 1024


def write_plan(run: RunDir) -> pa.Table:
    """Kept rows in source order (shard index, then offset), with byte ranges filled in."""
    manifest = pq.read_table(run.keep_parquet, columns=["shard", "key", "kept", "offset", "length"])
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
                    raise DataprunerError(f"kept sample {key!r} is not in {shard}: the embeddings do not match the shards")
                offsets[i], lengths[i] = ranges[key]
    return kept.set_column(kept.schema.get_field_index("offset"), "offset", pa.array(offsets, pa.int64())) \
               .set_column(kept.schema.get_field_index("length"), "length", pa.array(lengths, pa.int64()))


# plan (barrier) -----------------------------------------------------------------------------------------

def plan_token(ctx, part: str) -> str:
    from datapruner.steps import barrier_digest, token_of

    return token_of(barrier_digest(ctx, "select", "manifest"), ctx.cfg.shard_size)


def plan_outputs(run: RunDir, part: str) -> list:
    return [run.write_plan]


def plan(ctx, part: str) -> dict:
    """The kept rows in source order, one parquet row group per output shard (a write task reads only its own)."""
    table = write_plan(ctx.run)
    with atomic_path(ctx.run.write_plan) as tmp:
        pq.write_table(table, tmp, row_group_size=ctx.cfg.shard_size)
    return {"samples": table.num_rows}


# write (map over output shards) --------------------------------------------------------------------------

def parts(ctx) -> list[str]:
    from datapruner.steps import NotReady

    path = ctx.run.write_plan
    if ctx.run.read_marker("plan", "plan") is None or not path.exists():
        raise NotReady("no write plan")
    n = pq.ParquetFile(path).metadata.num_rows
    return [f"{j:06d}" for j in range(-(-n // ctx.cfg.shard_size))]


def token(ctx, part: str) -> str:
    from datapruner.steps import barrier_digest

    return barrier_digest(ctx, "plan", "plan")


def outputs(run: RunDir, part: str) -> list:
    return [run.shard(int(part)), run.shard_stats(int(part))]


def run(ctx, part_ids: list[str], state=None):
    plan_file, size = pq.ParquetFile(ctx.run.write_plan), ctx.cfg.shard_size
    for part in part_ids:
        j = int(part)
        yield part, {"samples": write_one(ctx.run, j, plan_rows(plan_file, j * size, (j + 1) * size))}


def plan_rows(plan_file: pq.ParquetFile, lo: int, hi: int) -> pa.Table:
    """Rows [lo, hi) of the plan, reading only the row groups that hold them."""
    meta, start, groups, first = plan_file.metadata, 0, [], None
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if start < hi and start + n > lo:
            groups.append(g)
            first = start if first is None else first
        start += n
    if not groups:
        return plan_file.schema_arrow.empty_table()
    return plan_file.read_row_groups(groups).slice(lo - first, hi - lo)


def write_one(run: RunDir, j: int, rows: pa.Table) -> int:
    """Output shard j: its plan rows' byte ranges, copied, then the end-of-archive blocks."""
    sources = []
    with atomic_path(run.shard(j)) as tmp, open(tmp, "wb") as out:
        for shard, group in groupby(zip(rows.column("shard").to_pylist(), rows.column("offset").to_pylist(),
                                        rows.column("length").to_pylist()), key=lambda r: r[0]):
            _copy_ranges(shard, [(o, n) for _, o, n in group], out)
            sources.append(shard)
        out.write(END_OF_ARCHIVE)
    size = run.shard(j).stat().st_size
    write_json(run.shard_stats(j), {"samples": rows.num_rows, "bytes": size, "sources": sources})
    return rows.num_rows


def _copy_ranges(shard: str, ranges: list[tuple[int, int]], out) -> None:
    """Ranged reads of one source; adjacent samples are read as one range."""
    with fsspec.open(shard, "rb") as src:
        for start, length in _merged(ranges):
            src.seek(start)
            data = src.read(length)
            if len(data) != length:
                raise DataprunerError(f"{shard}: expected {length} bytes at offset {start}, got {len(data)}")
            out.write(data)


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for start, length in ranges:
        if merged and merged[-1][0] + merged[-1][1] == start:
            merged[-1][1] += length
        else:
            merged.append([start, length])
    return [(s, n) for s, n in merged]
