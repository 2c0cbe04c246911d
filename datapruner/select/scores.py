"""Reading every scores part back as one table, joined row for row with its metadata."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.embed.outputs import errors_path, read_metadata
from datapruner.io.rundir import RunDir
from datapruner.metrics.step import scores_path

META_COLUMNS = ("uid", "caption", "label", "offset", "length")


def load_scores(run: RunDir) -> pa.Table:
    """One row per valid sample: scores + the metadata columns the policy, manifest and writer need."""
    tables = []
    for part, shard in zip(run.part_ids(), run.shards()):
        path = scores_path(run, part)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `datapruner score` (or the score step) first")
        scores = pq.read_table(path)
        meta = read_metadata(run, part, shard)
        for name in META_COLUMNS:
            if name in meta.column_names and name not in scores.column_names:
                scores = scores.append_column(name, meta.column(name))
        tables.append(scores)
    return pa.concat_tables(tables, promote_options="default")


def load_errors(run: RunDir) -> pa.Table | None:
    tables = [pq.read_table(errors_path(run, p)) for p in run.part_ids() if errors_path(run, p).exists()]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else None
