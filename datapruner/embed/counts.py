"""run.json's sample counts over every part, read from parquet footers only.

Apart from embed/outputs.py so the writers do not import the join (embed/join.py imports them).
"""

from __future__ import annotations

import pyarrow.parquet as pq

from datapruner.embed.join import file_info, unmatched_counts
from datapruner.embed.layouts import Layout
from datapruner.io.rundir import RunDir


def count_parts(run: RunDir) -> dict:
    """Valid samples (metadata rows) and errors over every part, plus the join's totals (precomputed embeddings)."""
    valid = errors = 0
    for part in run.part_ids():
        if run.metadata(part).exists():
            valid += pq.ParquetFile(run.metadata(part)).metadata.num_rows
        if run.errors(part).exists():
            errors += pq.ParquetFile(run.errors(part)).metadata.num_rows
    return {"valid": valid, "errors": errors, **unmatched_counts(run), **unreadable_counts(run)}


def unreadable_counts(run: RunDir) -> dict:
    """How many metadata parts of the precomputed embeddings failed while the index step read them."""
    recorded = run.precomputed
    if not recorded:
        return {}
    paths = [run.join_index(p) for p in Layout.from_dict(recorded).part_ids()]
    return {"unreadable_embeddings_parts": sum(1 for p in paths if p.exists() and file_info(p).get("unreadable"))}
