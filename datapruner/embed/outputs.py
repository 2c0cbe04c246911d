"""Writing one shard's embeddings, metadata and errors in the embedding-reader layout."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.embed.bad_rows import without_bad_rows
from datapruner.errors import DataprunerError
from datapruner.io.atomic import save_npy, save_parquet
from datapruner.io.identity import with_identity, without_identity
from datapruner.io.rundir import RunDir

METADATA_SCHEMA = pa.schema([
    ("shard", pa.string()), ("key", pa.string()), ("offset", pa.int64()), ("length", pa.int64()),
    ("uid", pa.string()), ("caption", pa.string()), ("label", pa.int64()),
])
OURS = tuple(METADATA_SCHEMA.names)  # a source's own column of one of these names loses to ours
ERRORS_SCHEMA = pa.schema([("shard", pa.string()), ("key", pa.string()), ("stage", pa.string()), ("reason", pa.string())])


def write_embed_part(run: RunDir, part: str, shard: str, img: np.ndarray, txt: np.ndarray | None,
                     rows: list[dict], errors: list[dict], source: dict | None = None) -> int:
    """Errors and text first, metadata last: metadata present means the part's embeddings are. A row's
    keys beyond METADATA_SCHEMA (the source's per-sample fields) become extra columns; `source`, the
    shard's identity as it was read (io/identity.py), goes into the metadata's schema metadata (as the
    join's scan puts it into the samples table that precomputed embeddings' metadata is taken from).
    Returns how many rows were bad embeddings (invalid, in errors/ instead)."""
    return write_embed_table(run, part, shard, img, txt, with_identity(metadata_table(rows), source), errors)


def write_embed_table(run: RunDir, part: str, shard: str, img: np.ndarray, txt: np.ndarray | None,
                      meta: pa.Table, errors: list[dict]) -> int:
    img, txt, meta, bad = without_bad_rows(img, txt, meta)
    own = run.own_embeddings
    write_errors(run, part, shard, [*errors, *bad])
    save_npy(run.img_emb(part, own), img.astype(np.float16))
    if txt is not None:
        save_npy(run.text_emb(part, own), txt.astype(np.float16))
    save_parquet(run.metadata(part, own), meta)
    return len(bad)


def metadata_table(rows: list[dict]) -> pa.Table:
    """METADATA_SCHEMA's columns, then every other key of the rows (sorted) as a column of scalars."""
    table = pa.Table.from_pylist([{k: r.get(k) for k in OURS} for r in rows], schema=METADATA_SCHEMA)
    for name in sorted({k for r in rows for k in r} - set(OURS)):
        table = table.append_column(name, scalar_column([r.get(name) for r in rows]))
    return table


def scalar_column(values: list) -> pa.Array:
    """Scalars as Arrow infers them; nested values as JSON text; a column of mixed kinds as strings."""
    values = [_json_text(v) if isinstance(v, (dict, list, tuple)) else v for v in values]
    try:
        column = pa.array(values)
        return pa.nulls(len(values), pa.string()) if pa.types.is_null(column.type) else column
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else v if isinstance(v, str) else _json_text(v) for v in values], pa.string())


def sane_columns(table: pa.Table) -> pa.Table:
    """A source's metadata with nested columns (lists, structs, maps) as JSON text, dictionaries decoded and
    all-null columns as strings."""
    for i, f in enumerate(table.schema):
        t = f.type
        if pa.types.is_null(t):  # a column with no value in this part: text, so parts and joins agree
            table = table.set_column(i, f.name, pa.nulls(table.num_rows, pa.string()))
        elif pa.types.is_dictionary(t):
            table = table.set_column(i, f.name, table.column(i).cast(t.value_type))
        elif pa.types.is_nested(t):
            table = table.set_column(i, f.name, pa.array([None if v is None else _json_text(v)
                                                          for v in table.column(i).to_pylist()], pa.string()))
    return table


def _json_text(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def write_errors(run: RunDir, part: str, shard: str, errors: list[dict]) -> None:
    err_rows = [{"shard": shard, **e} for e in errors]
    save_parquet(run.errors(part), pa.Table.from_pylist(err_rows, schema=ERRORS_SCHEMA))


def read_metadata(run: RunDir, part: str, shard: str) -> pa.Table:
    """The part's metadata with shard/offset/length columns, filled in for precomputed layouts."""
    table = without_identity(pq.read_table(run.metadata(part)))
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
    x = as_float32(x)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    x /= np.where(norms > 0, norms, 1.0)
    return x


def as_float32(x: np.ndarray) -> np.ndarray:
    """A new float32 copy of x. From float16 it is converted by torch's vectorised copy (numpy's own conversion
    takes ~4× as long, a measurable share of every pass over the embeddings)."""
    out = np.empty(x.shape, np.float32)
    if x.dtype != np.float16 or x.ndim != 2 or not x.size:
        out[...] = x
        return out
    import torch

    with warnings.catch_warnings():  # a read-only memmap is only read here
        warnings.simplefilter("ignore", UserWarning)
        torch.from_numpy(out).copy_(torch.from_numpy(np.ascontiguousarray(x)))
    return out


def read_img_emb(run: RunDir, part: str) -> np.ndarray:
    return np.load(run.img_emb(part), mmap_mode="r")


def read_text_emb(run: RunDir, part: str) -> np.ndarray | None:
    path = run.text_emb(part)
    return np.load(path, mmap_mode="r") if path.exists() else None
