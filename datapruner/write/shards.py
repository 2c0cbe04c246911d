"""The write map step: each pruned shard is a copy of its kept samples' byte ranges, then two zero blocks.

The shards folder is laid out as img2dataset writes one, so open_clip, DataComp's resharder and
img2dataset's readers take it as it is: NAME.tar, NAME.parquet (the shard's rows, in shard order, with
every metadata column the source had and status "success"), NAME_stats.json (img2dataset's fields), and
sizes.json ({NAME.tar: samples}, written by the plan, which knows every shard's count)."""

from __future__ import annotations

import json
from itertools import groupby
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError
from datapruner.io.atomic import atomic_path, save_parquet, write_json
from datapruner.io.identity import SourceChanged, Sources, remedy
from datapruner.io.ranges import read_ranges
from datapruner.io.rundir import RunDir, output_name
from datapruner.io.shards import open_shard, refuse_pipe
from datapruner.embed.teacher import TeacherEmbeddings
from datapruner.io.tar_samples import iter_samples, leading_key, member_bytes
from datapruner.select.scores import source_columns

END_OF_ARCHIVE = b"\0" * 1024
PLAN_LAYOUT = "row group per output shard, cut at repeated keys; metadata columns; names"  # in the plan's
# token: older plans are redone
NAMES_KEY = b"datapruner.output_shards"  # the plan's schema metadata: output shard j's name, for every j


def write_plan(run: RunDir, allow_pipe: bool = False, allow_unsafe_names: bool = False) -> pa.Table:
    """Kept rows in source order (shard index, then offset), with byte ranges filled in and the source's
    metadata columns (for each output shard's parquet). A source shard that changed since it was embedded
    is refused before any is read."""
    carried = source_columns(pq.read_schema(run.keep_parquet).names)
    # only the kept rows are materialised (pyarrow filters each row group as it reads it)
    kept = pq.read_table(run.keep_parquet, columns=["shard", "key", "offset", "length", *carried],
                         filters=[("kept", "==", True)])
    named = kept.column("shard").unique().to_pylist()
    refuse_pipe_shards(run, named, str(run.keep_parquet), allow_pipe)
    Sources(run).refuse_changed(named)
    kept = _fill_missing_ranges(kept, allow_unsafe_names)
    shard_index = pc.index_in(kept.column("shard"), value_set=pa.array(run.shards(), pa.string()))
    if shard_index.null_count:
        raise DataprunerError(f"{run.keep_parquet} names shards that {run.run_json} does not list")
    kept = kept.append_column("__shard_index", shard_index)  # a name no source column has
    return kept.sort_by([("__shard_index", "ascending"), ("offset", "ascending")]).drop_columns(["__shard_index"])


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
        ranges, refused = _ranges_of(shard, allow_unsafe_names)
        for i, (s, key) in enumerate(zip(shards, keys)):
            if s == shard and offsets[i] is None:
                if key not in ranges:
                    raise DataprunerError(_not_copied(key, shard, refused.get(key)))
                offsets[i], lengths[i] = ranges[key]
    return kept.set_column(kept.schema.get_field_index("offset"), "offset", pa.array(offsets, pa.int64())) \
               .set_column(kept.schema.get_field_index("length"), "length", pa.array(lengths, pa.int64()))


def _ranges_of(shard: str, allow_unsafe_names: bool) -> tuple[dict, dict]:
    """({key: (offset, length)} of the shard's valid samples, {key: reason} of the others), in one scan."""
    ranges, refused = {}, {}
    with open_shard(shard) as stream:
        for sample in iter_samples(stream, allow_unsafe_names):
            if sample.error is None:
                ranges[sample.key] = (sample.offset, sample.length)
            else:
                refused[sample.key] = sample.error
    return ranges, refused


def _not_copied(key: str, shard: str, error: str | None) -> str:
    if error is None:
        return f"kept sample {key!r} is not in {shard}: the embeddings do not match the shards"
    # e.g. member names that would escape a folder: this command's allow_unsafe_names decides, not the run's
    return f"kept sample {key!r} of {shard} is not copied: {error}"


# the plan ------------------------------------------------------------------------------------------------

def plan_outputs(run: RunDir) -> list:
    return [run.write_plan, run.sizes_json]


def build_plan(run: RunDir, shard_size: int, prefix: str, digits: int, allow_pipe: bool,
               allow_unsafe_names: bool) -> dict:
    """The kept rows in source order, one parquet row group per output shard (a write task reads only its own),
    the output shards' names in its schema metadata, and sizes.json for the shards folder."""
    table = write_plan(run, allow_pipe, allow_unsafe_names)
    bounds = output_shards(table.column("key").to_pylist(), shard_size)
    names = [output_name(j, prefix, digits) for j in range(len(bounds))]
    schema = table.schema.with_metadata({NAMES_KEY: json.dumps(names).encode()})
    with atomic_path(run.write_plan) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for lo, hi in bounds:
            writer.write_table(table.slice(lo, hi - lo), row_group_size=hi - lo)
    write_json(run.sizes_json, sizes(names, bounds))
    return {"samples": table.num_rows, "output_shards": len(bounds)}


def sizes(names: list[str], bounds: list[tuple[int, int]]) -> dict[str, int]:
    """sizes.json: {shard file name: samples}. open_clip's get_dataset_size sums it over the shards it is
    given (by base name); DataComp's resharder reads it as its shard table (--shard-table)."""
    return {f"{name}.tar": hi - lo for name, (lo, hi) in zip(names, bounds)}


def plan_names(path) -> list[str]:
    """The output shards' names, in row group order, as the plan recorded them."""
    file = pq.ParquetFile(path)
    recorded = (file.schema_arrow.metadata or {}).get(NAMES_KEY)
    if recorded is None:  # a plan of an older layout: its token is stale, the plan step redoes it
        return [output_name(j) for j in range(file.metadata.num_row_groups)]
    return json.loads(recorded)


# write (map over output shards) --------------------------------------------------------------------------

def outputs(run: RunDir, part: str) -> list:
    return [run.shard(part), run.shard_parquet(part), run.shard_stats(part)]


def write_shards(run: RunDir, part_ids: list[str], allow_pipe: bool, with_embeddings: bool = False):
    """Output shards `part_ids` of the plan, each yielded once its tar, parquet and stats are written. The
    source shards they read are checked first: a changed one is refused before any output is written."""
    plan_file = pq.ParquetFile(run.write_plan)
    index = {name: j for j, name in enumerate(plan_names(run.write_plan))}
    read = plan_file.read_row_groups([index[part] for part in part_ids], columns=["shard"]).column("shard")
    Sources(run).refuse_changed(read.unique().to_pylist())
    teacher = TeacherEmbeddings(run) if with_embeddings else None
    for part in part_ids:
        rows = plan_rows(plan_file, index[part])
        refuse_pipe_shards(run, rows.column("shard").unique().to_pylist(), str(run.write_plan), allow_pipe)
        yield part, {"samples": write_one(run, part, rows, teacher)}


def plan_rows(plan_file: pq.ParquetFile, j: int) -> pa.Table:
    """The rows of output shard j: the plan's row group j."""
    return plan_file.read_row_group(j)


def write_one(run: RunDir, name: str, rows: pa.Table, teacher: TeacherEmbeddings | None = None) -> int:
    """Output shard `name`: its plan rows' byte ranges, copied (each followed by its stored embeddings as
    members when `teacher` is given), then the end-of-archive blocks; then its
    parquet and its stats (the tar first: a stats file present means its shard is). A range that does not
    start with its sample's tar header stops the shard (its temp file is removed, nothing is marked)."""
    sources = []
    columns = [rows.column(c).to_pylist() for c in ("shard", "key", "offset", "length")]
    with atomic_path(run.shard(name)) as tmp, open(tmp, "wb") as out:
        for shard, group in groupby(zip(*columns), key=lambda r: r[0]):
            group = list(group)
            for (_, key, offset, _), data in zip(group, read_ranges(shard, [(o, n) for _, _, o, n in group])):
                check_sample_bytes(run, name, shard, key, offset, data)
                out.write(data)
                if teacher is not None:
                    out.write(b"".join(member_bytes(f"{key}.{ext}", npy) for ext, npy in
                                       teacher.members(shard, key).items()))
            sources.append(shard)
        out.write(END_OF_ARCHIVE)
    save_parquet(run.shard_parquet(name), shard_rows(rows))
    write_json(run.shard_stats(name), shard_stats(rows.num_rows, run.shard(name).stat().st_size, sources))
    return rows.num_rows


def check_sample_bytes(run: RunDir, name: str, shard: str, key: str, offset: int, data: bytes) -> None:
    """Defence in depth beside the identity check: the bytes copied for sample `key` must start with the tar
    header of a member of `key` (a shard replaced by one of the same size and time would not)."""
    found = leading_key(data)
    if found != key:
        what = f"sample {found!r}" if found is not None else "no tar header of a sample"
        raise SourceChanged(f"{name}.tar was not written: the bytes at offset {offset} of {shard} hold {what}, not "
                            f"sample {key!r}, so the shard changed since it was embedded; {remedy(run)}")


def shard_rows(rows: pa.Table) -> pa.Table:
    """NAME.parquet, as img2dataset writes one beside each shard: key, the source's metadata columns (uid,
    caption, url, width, height, sha256, …) and status "success" (every sample in the shard is one)."""
    table = rows.select(["key", *source_columns(rows.column_names)]).replace_schema_metadata(None)
    status = pa.array(["success"] * rows.num_rows, pa.string())
    if "status" in table.column_names:
        return table.set_column(table.schema.get_field_index("status"), "status", status)
    return table.append_column("status", status)


def shard_stats(count: int, size: int, sources: list[str]) -> dict:
    """NAME_stats.json: img2dataset's fields (logger.write_stats), with fixed times (0) so that a rerun writes
    the same bytes, then ours (samples, bytes, the source shards read).
    DataComp's resharder reads `successes` as the shard's size; img2dataset's own reader, every field."""
    return {
        "count": count, "successes": count, "failed_to_download": 0, "failed_to_resize": 0,
        "duration": 0.0, "start_time": 0.0, "end_time": 0.0, "status_dict": {"success": count},
        "samples": count, "bytes": size, "sources": sources,
    }
