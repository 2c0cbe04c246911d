"""Joining precomputed embeddings rows to the shards' samples: an external hash join, bounded by a bucket.

    index  map over the source parts   part p's join values (+ its metadata) → RUN/join/index/part-{p}.parquet,
                                       sorted by hash bucket, one row group per bucket
    scan   map over the input shards   shard i's samples (byte ranges, caption, label, uid, json and
                                       img2dataset fields) → RUN/join/samples/, and its (value, position)
                                       pairs bucketed the same way
    join   map over the buckets        bucket b of every index file, joined in memory (Arrow's hash join) →
                                       RUN/join/matches/bucket-{b}.parquet, one row group per input shard
    embed  map over the input shards   shard i's row group of every matches file, its embeddings gathered
                                       from the source parts by row → RUN/embeddings/ (embed/precomputed.py)

A bucket holds about BUCKET_ROWS rows of each side whatever the dataset's size, and every file is read by
row group, so memory is bounded by a part (index, embed) or a bucket (join), never by the dataset.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.embed.fields import SampleFields
from datapruner.embed.layouts import Layout
from datapruner.embed.outputs import OURS, metadata_table, sane_columns
from datapruner.errors import DataprunerError
from datapruner.io.atomic import atomic_path, save_parquet
from datapruner.io.rundir import RunDir

VALUE, PART, ROW, SHARD, POS = "__value", "__part", "__row", "__shard", "__pos"
INTERNAL = (VALUE, PART, ROW, SHARD, POS)
_IMAGE_SUFFIX = r"(?i)\.(jpe?g|png|webp|gif|bmp|tiff?)$"
_CHUNK = 1 << 17
log = logging.getLogger(__name__)


# hashing and bucketed files -----------------------------------------------------------------------------

def bucket_of(values: pa.Array | pa.ChunkedArray, buckets: int) -> np.ndarray:
    """A stable hash of each (non-null) string, modulo `buckets`: the same value lands in the same bucket in
    every process and on every machine (a polynomial over its UTF-8 bytes, then splitmix64's finaliser),
    computed on Arrow's buffers without a Python object per value."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    arr = pc.cast(arr, pa.large_binary())
    out = np.empty(len(arr), np.uint64)
    for lo in range(0, len(arr), _CHUNK):
        out[lo:lo + _CHUNK] = _hash_chunk(arr.slice(lo, _CHUNK))
    return (out % np.uint64(buckets)).astype(np.int64)


def _hash_chunk(arr: pa.Array) -> np.ndarray:
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    base = offsets[0]
    seg = raw[base:offsets[-1]].astype(np.uint64) + np.uint64(1)
    starts, lengths = offsets[:-1] - base, np.diff(offsets)
    h = np.zeros(len(arr), np.uint64)
    if len(seg):
        pos = np.arange(len(seg), dtype=np.int64) - np.repeat(starts, lengths)
        powers = np.cumprod(np.full(int(lengths.max()), 1099511628211, np.uint64), dtype=np.uint64)
        nonempty = lengths > 0
        with np.errstate(over="ignore"):
            h[nonempty] = np.add.reduceat(seg * powers[pos], starts[nonempty])
    with np.errstate(over="ignore"):
        h ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def write_grouped(path: Path, table: pa.Table, groups: np.ndarray, info: dict | None = None) -> None:
    """`table` sorted (stably) by `groups`, one row group per group, and {group: row group} in the footer."""
    order = np.argsort(groups, kind="stable")
    table, groups = table.take(pa.array(order)), groups[order]
    values, starts = np.unique(groups, return_index=True)
    bounds = list(zip(values.tolist(), starts.tolist(), [*starts[1:].tolist(), len(groups)]))
    meta = {b"groups": json.dumps({str(g): i for i, (g, _, _) in enumerate(bounds)}).encode(),
            b"info": json.dumps(info or {}, sort_keys=True).encode()}
    schema = table.schema.with_metadata(meta)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for _, lo, hi in bounds:
            writer.write_table(table.slice(lo, hi - lo).replace_schema_metadata(meta), row_group_size=hi - lo)
        if not bounds:
            writer.write_table(table.replace_schema_metadata(meta))


def read_group(path: Path, group: int) -> pa.Table | None:
    f = pq.ParquetFile(path)
    where = json.loads(f.schema_arrow.metadata[b"groups"]).get(str(group))
    return None if where is None else f.read_row_group(where)


def file_info(path: Path) -> dict:
    return json.loads(pq.ParquetFile(path).schema_arrow.metadata.get(b"info", b"{}"))


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    tables = [t.replace_schema_metadata(None) for t in tables if t is not None]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


# index: the source parts -------------------------------------------------------------------------------

def index_outputs(run: RunDir, part: str) -> list:
    return [run.join_index(part)]


def join_values(column: pa.ChunkedArray | pa.Array, join_key: str) -> pa.Array:
    """The metadata's join column as strings; an image_path loses an image suffix (clip-retrieval's
    webdataset reader writes the sample key, its folder reader a file name)."""
    values = pc.cast(column, pa.string())
    if join_key == "image_path":
        values = pc.replace_substring_regex(values, _IMAGE_SUFFIX, "")
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def index_part(run: RunDir, layout: Layout, part: str, files: dict | None = None) -> dict:
    """Part p's join values and metadata, bucketed; `files` (the identity of its files, taken by this step:
    embed/precomputed_identity.py) goes in the footer."""
    source = layout.parts[int(part)]
    try:
        meta = pq.read_table(source.meta)
    except (OSError, pa.ArrowException) as exc:  # a corrupt body behind a sound footer
        return _unreadable_index(run, layout, part, exc)
    if meta.num_rows != source.rows:
        raise DataprunerError(f"{source.meta} has {meta.num_rows} rows, {source.rows} when the run started: "
                              "the embeddings folder changed under the run")
    values = join_values(meta.column(layout.join_key), layout.join_key)
    extra = sane_columns(meta.drop_columns([c for c in meta.column_names if c in OURS or c in INTERNAL]))
    table = extra.append_column(VALUE, values).append_column(PART, pa.array(np.full(meta.num_rows, int(part), np.int32))) \
                 .append_column(ROW, pa.array(np.arange(meta.num_rows, dtype=np.int64)))
    valid = pc.is_valid(values)
    table = table.filter(valid)
    write_grouped(run.join_index(part), table, bucket_of(table.column(VALUE), layout.buckets),
                  {"files": files} if files else None)
    return {"embedding_rows": meta.num_rows, "rows_without_join_value": meta.num_rows - table.num_rows}


def _unreadable_index(run: RunDir, layout: Layout, part: str, exc: Exception) -> dict:
    """A metadata part that fails while it is read joins no sample: the samples its rows would have met
    are invalid as "no embedding". Its index is empty and says why (run.json counts it)."""
    from datapruner.embed.headers import one_line

    why = f"{layout.parts[int(part)].meta}: {one_line(exc)}"
    log.warning("embeddings part %s cannot be read; its rows join no sample: %s", part, why)
    empty = pa.table({VALUE: pa.array([], pa.string()), PART: pa.array([], pa.int32()), ROW: pa.array([], pa.int64())})
    write_grouped(run.join_index(part), empty, np.zeros(0, np.int64), {"unreadable": why})
    return {"embedding_rows": 0, "rows_without_join_value": 0, "unreadable_parts": 1}


# scan: the input shards ---------------------------------------------------------------------------------

def scan_outputs(run: RunDir, part: str) -> list:
    return [run.join_samples(part), run.join_scan_errors(part), run.join_sample_index(part)]


def scan_shard(run: RunDir, fields: SampleFields, layout: Layout, part: str) -> dict:
    """Every sample of the shard as a metadata row (or an error), with its position and join value; the
    shard's identity as it was read in the samples table's schema metadata (embed/precomputed.py's
    build_part keeps it in the part's metadata)."""
    from datapruner.embed.decode import UnusableSample, beside_rows, image_bytes, metadata_row
    from datapruner.embed.layouts import sample_value
    from datapruner.io.identity import Fingerprint, with_identity
    from datapruner.io.shards import open_shard
    from datapruner.io.tar_samples import SHARD_KEY, iter_samples
    from datapruner.reasons import reason

    shard = run.shard_of(part)
    beside = beside_rows(shard)
    rows, errors, pos = [], [], -1
    fingerprint = Fingerprint()
    try:
        with open_shard(shard, fingerprint) as stream:
            for pos, sample in enumerate(iter_samples(stream, fields.allow_unsafe_names)):
                if sample.error:
                    errors.append({"key": sample.key, "stage": "read", "reason": sample.error, POS: pos})
                    continue
                try:
                    image_bytes(sample.members)
                    row = metadata_row(sample, shard, beside, fields.caption_field, fields.label_field)
                except UnusableSample as exc:
                    errors.append({"key": sample.key, "stage": "decode", "reason": str(exc), POS: pos})
                    continue
                rows.append({**row, POS: pos, VALUE: sample_value(layout.join_key, sample.key, row)})
    except OSError as exc:
        errors.append({"key": SHARD_KEY, "stage": "read", POS: pos + 1,
                       "reason": reason("cannot open shard", f"{type(exc).__name__}: {exc}")})
    samples = with_identity(_samples_table(rows), fingerprint.identity)  # carried on to the part's metadata
    save_scan(run, layout, part, samples, pa.Table.from_pylist(errors, schema=SCAN_ERRORS))
    return {"shard_samples": len(rows) + len(errors)}


def save_scan(run: RunDir, layout: Layout, part: str, samples: pa.Table, errors: pa.Table) -> None:
    """A shard's samples (metadata columns, __pos, __value), its errors, and its (value, position) pairs
    by bucket."""
    save_parquet(run.join_samples(part), samples)
    save_parquet(run.join_scan_errors(part), errors)
    keyed = samples.select([VALUE, POS]).filter(pc.is_valid(samples.column(VALUE)))
    keyed = keyed.append_column(SHARD, pa.array(np.full(keyed.num_rows, int(part), np.int32)))
    write_grouped(run.join_sample_index(part), keyed, bucket_of(keyed.column(VALUE), layout.buckets))


SCAN_ERRORS = pa.schema([("key", pa.string()), ("stage", pa.string()), ("reason", pa.string()), (POS, pa.int64())])


def _samples_table(rows: list[dict]) -> pa.Table:
    table = metadata_table([{k: v for k, v in r.items() if k not in (POS, VALUE)} for r in rows])
    return table.append_column(POS, pa.array([r[POS] for r in rows], pa.int64())) \
                .append_column(VALUE, pa.array([r[VALUE] for r in rows], pa.string()))


# join: one bucket of both sides -------------------------------------------------------------------------

def join_outputs(run: RunDir, part: str) -> list:
    return [run.join_matches(part)]


def join_bucket(run: RunDir, layout: Layout, bucket: int, name: str) -> dict:
    """Bucket `bucket` of both sides joined on the value. A value held by several embeddings rows takes
    the first (in part, row order; the others are counted as duplicates); a value held by several shard
    samples is ambiguous and joins none of them (their __part is -1). Embeddings rows that meet no
    sample are counted."""
    emb = _concat([read_group(run.join_index(p), bucket) for p in layout.part_ids()])
    smp = _concat([read_group(run.join_sample_index(p), bucket) for p in run.part_ids()])
    empty = pa.table({SHARD: pa.array([], pa.int32()), POS: pa.array([], pa.int64()), PART: pa.array([], pa.int32()),
                      ROW: pa.array([], pa.int64())})
    n_emb = emb.num_rows if emb is not None else 0
    if emb is not None:
        emb = emb.append_column("__order", pa.array(np.arange(n_emb, dtype=np.int64)))
        first = emb.group_by(VALUE, use_threads=False).aggregate([("__order", "min")])
        emb = emb.take(first.column("__order_min")).drop_columns(["__order"])
    duplicates = n_emb - (emb.num_rows if emb is not None else 0)
    if smp is None or emb is None:
        matches = empty if smp is None else _ambiguous_only(smp, empty)
        unmatched = emb.num_rows if emb is not None else 0
    else:
        counts = smp.group_by(VALUE, use_threads=False).aggregate([(POS, "count")])
        shared = counts.filter(pc.greater(counts.column(f"{POS}_count"), 1)).column(VALUE)
        is_shared = pc.is_in(smp.column(VALUE), value_set=shared)
        single = smp.filter(pc.invert(is_shared))
        joined = single.join(emb, VALUE, join_type="inner", use_threads=False)
        ambiguous = _ambiguous_only(smp.filter(is_shared), empty)
        matches = _concat([joined.drop_columns([VALUE]), ambiguous])
        unmatched = emb.num_rows - int(pc.sum(pc.is_in(emb.column(VALUE), value_set=single.column(VALUE))).as_py() or 0) \
            - int(pc.sum(pc.is_in(emb.column(VALUE), value_set=shared)).as_py() or 0)
    info = {"unmatched_embeddings": unmatched, "duplicate_embeddings": duplicates}
    write_grouped(run.join_matches(name), matches, matches.column(SHARD).to_numpy().astype(np.int64), info)
    return dict(info)


def _ambiguous_only(smp: pa.Table, empty: pa.Table) -> pa.Table:
    n = smp.num_rows
    return pa.table({SHARD: smp.column(SHARD), POS: smp.column(POS), PART: pa.array(np.full(n, -1, np.int32)),
                     ROW: pa.array(np.full(n, -1, np.int64))}) if n else empty


def unmatched_counts(run: RunDir) -> dict:
    """The join's totals over every bucket (from the files' footers), for run.json's counts."""
    recorded = run.precomputed
    if not recorded:
        return {}
    totals = {"unmatched_embeddings": 0, "duplicate_embeddings": 0}
    for bucket in Layout.from_dict(recorded).bucket_ids():
        path = run.join_matches(bucket)
        if path.exists():
            for k, v in file_info(path).items():
                totals[k] = totals.get(k, 0) + v
    return totals
