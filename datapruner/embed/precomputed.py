"""Embeddings that already exist (LAION / DataComp / clip-retrieval layout) instead of embedding.

The folder is read-only: the run reads its parts in place (run.json `embeddings_dir`) and writes
only its own errors part. Part i must hold the embeddings of the i-th shard in sorted order.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from datapruner.embed.outputs import write_errors
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir


def check_layout(embeddings_dir: str, n_shards: int) -> None:
    """Checked when the command starts, before anything is written."""
    root = Path(embeddings_dir)
    if not (root / "img_emb").is_dir():
        raise DataprunerError(f"--embeddings {root}: no img_emb/ folder (embedding-reader layout expected)")
    found = list((root / "img_emb").glob("img_emb_*.npy"))
    if len(found) != n_shards:
        raise DataprunerError(
            f"{root} holds {len(found)} img_emb parts but the source has {n_shards} shards: "
            "part i must hold the embeddings of the i-th shard in sorted order")


def check_part(run: RunDir, part: str) -> dict:
    for path in (run.img_emb(part), run.metadata(part)):
        if not path.exists():
            raise DataprunerError(f"precomputed embeddings are missing {path} "
                                  "(parts are named by zero-padded shard index)")
    write_errors(run, part, run.shard_of(part), [])
    return {"samples": pq.ParquetFile(run.metadata(part)).metadata.num_rows, "errors": 0, "shards": 1}
