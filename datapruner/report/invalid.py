"""The invalid samples by reason: a few examples (shard, key, reason) of each category in errors/."""

from __future__ import annotations

import pyarrow.parquet as pq

from datapruner.io.rundir import RunDir
from datapruner.reasons import category_of

PER_CATEGORY = 5


def invalid_examples(run: RunDir, per_category: int = PER_CATEGORY) -> list[dict]:
    """[{"category": "decode: bad label", "count": n, "examples": [{shard, key, reason}...]}], by count."""
    found: dict[str, dict] = {}
    for part in run.part_ids():
        path = run.errors(part)
        if not path.exists():
            continue
        table = pq.read_table(path, columns=["shard", "key", "stage", "reason"])
        for row in table.to_pylist():
            name = f"{row['stage']}: {category_of(row['reason'] or '')}"
            entry = found.setdefault(name, {"category": name, "count": 0, "examples": []})
            entry["count"] += 1
            if len(entry["examples"]) < per_category:
                entry["examples"].append(row)
    return sorted(found.values(), key=lambda e: (-e["count"], e["category"]))
