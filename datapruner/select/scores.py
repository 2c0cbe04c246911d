"""Reading every scores part back as one table, joined row for row with its metadata."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.embed.outputs import read_metadata
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

log = logging.getLogger(__name__)

META_COLUMNS = ("uid", "caption", "label", "offset", "length")  # first, in this order; then the source's others
# columns the pipeline itself makes (besides score_<metric>); every other manifest column is the source's
PIPELINE_COLUMNS = ("shard", "key", "offset", "length", "cluster", "dist_to_centroid", "kept", "reason")
RESERVED = ("kept", "reason")  # added by the policy: a metadata column of that name cannot travel


def source_columns(names: list[str]) -> list[str]:
    """The per-sample fields the source knew (uid, caption, label, url, width, sha256, …), in table order:
    what the manifest carries beside the scores and the pruned folder's per-shard parquet holds."""
    return [n for n in names if n not in PIPELINE_COLUMNS and not n.startswith("score_")]


def load_scores(run: RunDir) -> pa.Table:
    """One row per valid sample: scores + every metadata column (the policy, manifest and writer read them).

    Parts may hold different metadata columns (a part lacking one gets nulls) and, for one column, types
    that widen to one (int32 and int64); a column whose types do not is carried as strings."""
    return concat_parts([part_table(run, part, shard) for part, shard in zip(run.part_ids(), run.shards())])


def part_table(run: RunDir, part: str, shard: str) -> pa.Table:
    """One part's scores with its metadata columns beside them."""
    path = run.scores(part)
    if not path.exists():
        raise DataprunerError(f"{path} is missing: run `datapruner select` (which scores) first")
    scores = pq.read_table(path)
    meta = read_metadata(run, part, shard)
    for name in _metadata_order(meta.column_names):
        if name not in scores.column_names:
            scores = scores.append_column(name, meta.column(name))
    return scores


def part_schema(run: RunDir, part: str) -> pa.Schema:
    """part_table's schema, from the files' footers alone."""
    path = run.scores(part)
    if not path.exists():
        raise DataprunerError(f"{path} is missing: run `datapruner select` (which scores) first")
    schema, meta = pq.read_schema(path), pq.read_schema(run.metadata(part))
    if "key" not in meta.names:
        raise DataprunerError(f"{run.metadata(part)} has no 'key' column: samples cannot be identified")
    added = [pa.field("shard", pa.string())] if "shard" not in meta.names else []
    added += [pa.field(n, pa.int64()) for n in ("offset", "length") if n not in meta.names]
    meta = pa.schema([*meta, *added], metadata=meta.metadata)
    for name in _metadata_order(meta.names):
        if name not in schema.names:
            schema = schema.append(meta.field(name))
    return schema


def parts_schema(schemas: list[pa.Schema]) -> tuple[pa.Schema, list[str]]:
    """The schema concat_parts gives these parts' tables, and the columns it carries as strings."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive"), []
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    clashing = _clashing(schemas)
    log.warning("metadata column(s) %s have types that differ between parts: carried as strings", clashing)
    as_text = [pa.schema([f.with_type(pa.string()) if f.name in clashing else f for f in s], metadata=s.metadata)
               for s in schemas]
    return pa.unify_schemas(as_text, promote_options="permissive"), clashing


def conform(table: pa.Table, schema: pa.Schema, clashing: list[str]) -> pa.Table:
    """One part's table as it is inside concat_parts' result."""
    if clashing:
        table = _as_strings(table, clashing)
    return pa.concat_tables([schema.empty_table(), table], promote_options="permissive")


def _metadata_order(names: list[str]) -> list[str]:
    dropped = [n for n in names if n in RESERVED]
    if dropped:
        log.warning("metadata column(s) %s not carried into the manifest: the names are the policy's", dropped)
    return [n for n in META_COLUMNS if n in names] + [n for n in names if n not in META_COLUMNS and n not in RESERVED]


def concat_parts(tables: list[pa.Table]) -> pa.Table:
    """Concatenate parts whose columns may differ: missing columns are null, types widen (permissive)."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    clashing = _clashing([t.schema for t in tables])
    log.warning("metadata column(s) %s have types that differ between parts: carried as strings", clashing)
    return pa.concat_tables([_as_strings(t, clashing) for t in tables], promote_options="permissive")


def _clashing(schemas: list[pa.Schema]) -> list[str]:
    types: dict[str, set] = {}
    for schema in schemas:
        for f in schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    return [n for n, ts in types.items() if len(ts) > 1 and not _widen(ts)]


def _widen(types: set) -> bool:
    try:
        pa.unify_schemas([pa.schema([("c", t)]) for t in types], promote_options="permissive")
        return True
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _as_strings(table: pa.Table, names: list[str]) -> pa.Table:
    for name in names:
        if name not in table.column_names:
            continue
        column = table.column(name)
        try:
            text = pc.cast(column, pa.string())
        except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pa.array([None if v is None else json.dumps(v, sort_keys=True, default=str)
                             for v in column.to_pylist()], pa.string())
        table = table.set_column(table.schema.get_field_index(name), name, text)
    return table


def load_errors(run: RunDir) -> pa.Table | None:
    tables = [pq.read_table(run.errors(p)) for p in run.part_ids() if run.errors(p).exists()]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else None
