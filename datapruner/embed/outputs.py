"""Writing one shard's embeddings, metadata and errors in the embedding-reader layout."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.io.rundir import RunDir, atomic_path

METADATA_SCHEMA = pa.schema([
    ("shard", pa.string()), ("key", pa.string()), ("offset", pa.int64()), ("length", pa.int64()),
    ("uid", pa.string()), ("caption", pa.string()), ("label", pa.int64()),
])
ERRORS_SCHEMA = pa.schema([("shard", pa.string()), ("key", pa.string()), ("stage", pa.string()), ("reason", pa.string())])


def img_emb_path(run: RunDir, part: str):
    return run.embeddings_dir / f"img_emb/img_emb_{part}.npy"


def text_emb_path(run: RunDir, part: str):
    return run.embeddings_dir / f"text_emb/text_emb_{part}.npy"


def metadata_path(run: RunDir, part: str):
    return run.embeddings_dir / f"metadata/metadata_{part}.parquet"


def errors_path(run: RunDir, part: str):
    return run / f"errors/part-{part}.parquet"


def save_npy(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def save_parquet(path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_embed_part(run: RunDir, part: str, shard: str, img: np.ndarray, txt: np.ndarray | None,
                     rows: list[dict], errors: list[dict]) -> None:
    """Errors and text first, metadata last: metadata present means the part's embeddings are."""
    err_rows = [{"shard": shard, **e} for e in errors]
    save_parquet(errors_path(run, part), pa.Table.from_pylist(err_rows, schema=ERRORS_SCHEMA))
    save_npy(img_emb_path(run, part), img.astype(np.float16))
    if txt is not None:
        save_npy(text_emb_path(run, part), txt.astype(np.float16))
    save_parquet(metadata_path(run, part), pa.Table.from_pylist(rows, schema=METADATA_SCHEMA))


def count_parts(run: RunDir) -> dict:
    """Valid samples (metadata rows) and errors over every part, from parquet footers only."""
    valid = errors = 0
    for part in run.part_ids():
        if metadata_path(run, part).exists():
            valid += pq.ParquetFile(metadata_path(run, part)).metadata.num_rows
        if errors_path(run, part).exists():
            errors += pq.ParquetFile(errors_path(run, part)).metadata.num_rows
    return {"valid": valid, "errors": errors}


def read_metadata(run: RunDir, part: str, shard: str) -> pa.Table:
    """The part's metadata with shard/offset/length columns, filled in for precomputed layouts."""
    table = pq.read_table(metadata_path(run, part))
    if "key" not in table.column_names:
        raise ValueError(f"{metadata_path(run, part)} has no 'key' column: samples cannot be identified")
    n = table.num_rows
    if "shard" not in table.column_names:
        table = table.append_column("shard", pa.array([shard] * n, pa.string()))
    for name in ("offset", "length"):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(n, pa.int64()))
    return table


def read_img_emb(run: RunDir, part: str) -> np.ndarray:
    return np.load(img_emb_path(run, part), mmap_mode="r")


def read_text_emb(run: RunDir, part: str) -> np.ndarray | None:
    path = text_emb_path(run, part)
    return np.load(path, mmap_mode="r") if path.exists() else None
