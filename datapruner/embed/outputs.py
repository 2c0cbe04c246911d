"""Writing one shard's embeddings, metadata and errors in the embedding-reader layout."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError
from datapruner.io.atomic import save_npy, save_parquet
from datapruner.io.rundir import RunDir

METADATA_SCHEMA = pa.schema([
    ("shard", pa.string()), ("key", pa.string()), ("offset", pa.int64()), ("length", pa.int64()),
    ("uid", pa.string()), ("caption", pa.string()), ("label", pa.int64()),
])
ERRORS_SCHEMA = pa.schema([("shard", pa.string()), ("key", pa.string()), ("stage", pa.string()), ("reason", pa.string())])


def write_embed_part(run: RunDir, part: str, shard: str, img: np.ndarray, txt: np.ndarray | None,
                     rows: list[dict], errors: list[dict]) -> None:
    """Errors and text first, metadata last: metadata present means the part's embeddings are."""
    own = run.own_embeddings
    write_errors(run, part, shard, errors)
    save_npy(run.img_emb(part, own), img.astype(np.float16))
    if txt is not None:
        save_npy(run.text_emb(part, own), txt.astype(np.float16))
    save_parquet(run.metadata(part, own), pa.Table.from_pylist(rows, schema=METADATA_SCHEMA))


def write_errors(run: RunDir, part: str, shard: str, errors: list[dict]) -> None:
    err_rows = [{"shard": shard, **e} for e in errors]
    save_parquet(run.errors(part), pa.Table.from_pylist(err_rows, schema=ERRORS_SCHEMA))


def count_parts(run: RunDir) -> dict:
    """Valid samples (metadata rows) and errors over every part, from parquet footers only."""
    valid = errors = 0
    for part in run.part_ids():
        if run.metadata(part).exists():
            valid += pq.ParquetFile(run.metadata(part)).metadata.num_rows
        if run.errors(part).exists():
            errors += pq.ParquetFile(run.errors(part)).metadata.num_rows
    return {"valid": valid, "errors": errors}


def read_metadata(run: RunDir, part: str, shard: str) -> pa.Table:
    """The part's metadata with shard/offset/length columns, filled in for precomputed layouts."""
    table = pq.read_table(run.metadata(part))
    if "key" not in table.column_names:
        raise DataprunerError(f"{run.metadata(part)} has no 'key' column: samples cannot be identified")
    n = table.num_rows
    if "shard" not in table.column_names:
        table = table.append_column("shard", pa.array([shard] * n, pa.string()))
    for name in ("offset", "length"):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(n, pa.int64()))
    return table


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows of unit length (zero rows stay zero). Embeddings are stored as float16, whose rounding
    leaves norms of 1 ± 1e-3: every similarity and distance is taken on renormalised rows, so that exact
    copies are exact duplicates."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def read_img_emb(run: RunDir, part: str) -> np.ndarray:
    return np.load(run.img_emb(part), mmap_mode="r")


def read_text_emb(run: RunDir, part: str) -> np.ndarray | None:
    path = run.text_emb(part)
    return np.load(path, mmap_mode="r") if path.exists() else None
