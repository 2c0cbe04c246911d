"""Reading every scores part back as one table, joined row for row with its metadata."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.embed.outputs import read_metadata
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

META_COLUMNS = ("uid", "caption", "label", "offset", "length")


def load_scores(run: RunDir) -> pa.Table:
    """One row per valid sample: scores + the metadata columns the policy, manifest and writer need."""
    tables = []
    for part, shard in zip(run.part_ids(), run.shards()):
        path = run.scores(part)
        if not path.exists():
            raise DataprunerError(f"{path} is missing: run `datapruner select` (which scores) first")
        scores = pq.read_table(path)
        meta = read_metadata(run, part, shard)
        for name in META_COLUMNS:
            if name in meta.column_names and name not in scores.column_names:
                scores = scores.append_column(name, meta.column(name))
        tables.append(scores)
    return pa.concat_tables(tables, promote_options="default")


def load_errors(run: RunDir) -> pa.Table | None:
    tables = [pq.read_table(run.errors(p)) for p in run.part_ids() if run.errors(p).exists()]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else None
