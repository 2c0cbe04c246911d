"""The write map step: each pruned shard is a copy of its kept samples' byte ranges, then two zero blocks."""

from __future__ import annotations

from itertools import groupby
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError
from datapruner.io.atomic import atomic_path, write_json
from datapruner.io.ranges import read_ranges
from datapruner.io.rundir import RunDir
from datapruner.io.shards import open_shard, refuse_pipe
from datapruner.io.tar_samples import iter_samples

END_OF_ARCHIVE = b"\0" * 1024
PLAN_LAYOUT = "row group per output shard, cut at repeated keys"  # in the plan's token: older plans are redone


def write_plan(run: RunDir, allow_pipe: bool = False, allow_unsafe_names: bool = False) -> pa.Table:
    """Kept rows in source order (shard index, then offset), with byte ranges filled in."""
    manifest = pq.read_table(run.keep_parquet, columns=["shard", "key", "kept", "offset", "length"])
    refuse_pipe_shards(run, manifest.column("shard").unique().to_pylist(), str(run.keep_parquet), allow_pipe)
    kept = manifest.filter(manifest.column("kept")).drop_columns(["kept"])
    kept = _fill_missing_ranges(kept, allow_unsafe_names)
    order = {url: i for i, url in enumerate(run.shards())}
    shard_index = pa.array([order[s] for s in kept.column("shard").to_pylist()], pa.int64())
    return kept.append_column("shard_index", shard_index).sort_by([("shard_index", "ascending"), ("offset", "ascending")])


def refuse_pipe_shards(run: RunDir, named: Iterable[str], where: str, allow_pipe: bool) -> None:
    """Reading a pipe: shard runs its shell command: refused unless the config allows it (--allow-pipe),
    whether run.json's shard list names it or `where` (the manifest, the write plan) does."""
    refuse_pipe(run.shards(), allow_pipe, str(run.run_json))
    refuse_pipe(named, allow_pipe, where)


def output_shards(keys: list[str], shard_size: int) -> list[tuple[int, int]]:
    """The plan rows [lo, hi) of each output shard: at most `shard_size` rows, and a new shard wherever a
    row's key equals the previous row's (samples from two source shards with one key would be read back
    as one sample by WebDataset, which groups adjacent members by key)."""
    bounds, lo = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or i - lo == shard_size or keys[i] == keys[i - 1]:
            bounds.append((lo, i))
            lo = i
    return bounds


def _fill_missing_ranges(kept: pa.Table, allow_unsafe_names: bool) -> pa.Table:
    """Precomputed embeddings carry no byte ranges: find them by one scan of each source shard."""
    missing = pc.is_null(kept.column("offset"))
    if not pc.any(missing).as_py():
        return kept
    offsets, lengths = kept.column("offset").to_pylist(), kept.column("length").to_pylist()
    shards, keys = kept.column("shard").to_pylist(), kept.column("key").to_pylist()
    for shard in sorted({s for s, m in zip(shards, missing.to_pylist()) if m}):
        with open_shard(shard) as stream:
            ranges = {s.key: (s.offset, s.length) for s in iter_samples(stream, allow_unsafe_names)
                      if s.error is None}
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

    return token_of(barrier_digest(ctx, "select", "manifest"), ctx.cfg.shard_size, PLAN_LAYOUT)


def plan_outputs(run: RunDir, part: str) -> list:
    return [run.write_plan]


def plan(ctx, part: str) -> dict:
    """The kept rows in source order, one parquet row group per output shard (a write task reads only its own)."""
    table = write_plan(ctx.run, ctx.cfg.allow_pipe, ctx.cfg.allow_unsafe_names)
    bounds = output_shards(table.column("key").to_pylist(), ctx.cfg.shard_size)
    with atomic_path(ctx.run.write_plan) as tmp, pq.ParquetWriter(tmp, table.schema) as writer:
        for lo, hi in bounds:
            writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
    return {"samples": table.num_rows, "output_shards": len(bounds)}


# write (map over output shards) --------------------------------------------------------------------------

def parts(ctx) -> list[str]:
    from datapruner.steps import NotReady

    path = ctx.run.write_plan
    if ctx.run.read_marker("plan", "plan") is None or not path.exists():
        raise NotReady("no write plan")
    return [f"{j:06d}" for j in range(pq.ParquetFile(path).metadata.num_row_groups)]


def token(ctx, part: str) -> str:
    from datapruner.steps import barrier_digest

    return barrier_digest(ctx, "plan", "plan")


def outputs(run: RunDir, part: str) -> list:
    return [run.shard(int(part)), run.shard_stats(int(part))]


def run(ctx, part_ids: list[str], state=None):
    plan_file = pq.ParquetFile(ctx.run.write_plan)
    for part in part_ids:
        rows = plan_rows(plan_file, int(part))
        refuse_pipe_shards(ctx.run, rows.column("shard").unique().to_pylist(), str(ctx.run.write_plan),
                           ctx.cfg.allow_pipe)
        yield part, {"samples": write_one(ctx.run, int(part), rows)}


def plan_rows(plan_file: pq.ParquetFile, j: int) -> pa.Table:
    """The rows of output shard j: the plan's row group j."""
    return plan_file.read_row_group(j)


def write_one(run: RunDir, j: int, rows: pa.Table) -> int:
    """Output shard j: its plan rows' byte ranges, copied, then the end-of-archive blocks."""
    sources = []
    with atomic_path(run.shard(j)) as tmp, open(tmp, "wb") as out:
        for shard, group in groupby(zip(rows.column("shard").to_pylist(), rows.column("offset").to_pylist(),
                                        rows.column("length").to_pylist()), key=lambda r: r[0]):
            for data in read_ranges(shard, [(o, n) for _, o, n in group]):
                out.write(data)
            sources.append(shard)
        out.write(END_OF_ARCHIVE)
    size = run.shard(j).stat().st_size
    write_json(run.shard_stats(j), {"samples": rows.num_rows, "bytes": size, "sources": sources})
    return rows.num_rows
