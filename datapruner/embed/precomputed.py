"""Embeddings that already exist (clip-retrieval / embedding-reader, LAION, DataComp) instead of embedding.

The folder is read-only. Its layout is found when the command starts (embed/layouts.py) and recorded in
run.json; the index, scan and join steps (embed/join.py) match its rows to the shards' samples, and the
embed step, here, writes the run's OWN per-shard parts from the matches: img_emb_{i}.npy (float16 unit
rows), metadata_{i}.parquet (shard, key, offset, length, uid, caption, label as a direct embedding writes
them, then the source's extra columns) and errors/part-{i} (a sample without an embedding is invalid at
`join` with "no embedding"). Every later step then reads RUN/embeddings as after a direct embedding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.embed.join import INTERNAL, PART, POS, ROW, VALUE, read_group
from datapruner.embed.layouts import Layout, detect
from datapruner.embed.outputs import write_embed_table
from datapruner.io.rundir import RunDir
from datapruner.reasons import reason

_detected: dict = {}


def resolve(cfg) -> Layout:
    """The layout of cfg.embeddings (detected once per process for the same folder state and options)."""
    root = Path(cfg.embeddings).resolve()
    stamp = tuple(os.stat(p).st_mtime_ns for p in [root, *sorted(q for q in root.iterdir() if q.is_dir())])
    key = (str(root), cfg.embeddings_layout, cfg.join_key, cfg.embeddings_column, stamp)
    if key not in _detected:
        _detected.clear()
        _detected[key] = detect(root, cfg.embeddings_layout, cfg.join_key, cfg.embeddings_column)
    return _detected[key]


def check_layout(cfg, shards: list[str]) -> Layout:
    """Checked when the command starts, before anything is written: the layout, its parts' row counts
    (footers and headers only) and the join column."""
    return resolve(cfg)


def build_part(run: RunDir, layout: Layout, part: str) -> dict:
    shard = run.shard_of(part)
    samples = pq.read_table(run.join_samples(part))
    scan_errors = pq.read_table(run.join_scan_errors(part)).to_pylist()
    found = [read_group(run.join_matches(b), int(part)) for b in layout.bucket_ids()]
    found = [t.replace_schema_metadata(None) for t in found if t is not None]
    matches = pa.concat_tables(found, promote_options="permissive") if found else None
    source_of = np.full(samples.num_rows, -2, np.int64)  # -2: no row holds its value; -1: ambiguous
    row_of = np.full(samples.num_rows, -1, np.int64)
    match_of = np.full(samples.num_rows, -1, np.int64)
    if matches is not None and matches.num_rows:
        index_of = {int(p): i for i, p in enumerate(samples.column(POS).to_numpy())}
        at = np.array([index_of[int(p)] for p in matches.column(POS).to_numpy()], np.int64)
        source_of[at] = matches.column(PART).to_numpy()
        row_of[at] = matches.column(ROW).to_numpy()
        match_of[at] = np.arange(matches.num_rows)
    chosen = np.flatnonzero(source_of >= 0)
    img = _gather(layout, source_of[chosen], row_of[chosen], text=False)
    txt = _gather(layout, source_of[chosen], row_of[chosen], text=True)
    meta = samples.take(pa.array(chosen, pa.int64())).drop_columns([POS, VALUE])
    if matches is not None:
        picked = matches.take(pa.array(match_of[chosen], pa.int64()))
        for name in sorted(set(picked.column_names) - set(INTERNAL) - set(meta.column_names)):
            meta = meta.append_column(name, picked.column(name))
    errors = scan_errors + _missing(samples, source_of, layout.join_key)
    errors = [{k: v for k, v in e.items() if k != POS} for e in sorted(errors, key=lambda e: e[POS])]
    write_embed_table(run, part, shard, img, txt, meta, errors)
    return {"samples": len(chosen), "errors": len(errors), "shards": 1,
            "no_embedding": int((source_of < 0).sum())}


def _missing(samples: pa.Table, source_of: np.ndarray, join_key: str) -> list[dict]:
    """A sample without an embedding is invalid at `join`: it has no value, or no row holds its value, or
    several samples share it (which one the row belongs to cannot be told)."""
    rows = []
    keys, values, positions = (samples.column(c).to_pylist() for c in ("key", VALUE, POS))
    for i in np.flatnonzero(source_of < 0):
        value = values[i]
        if value is None:
            detail = f"the sample has no {join_key}"
        elif source_of[i] == -1:
            detail = f"its {join_key} {value!r} is shared by other samples of the shards"
        else:
            detail = f"no row of the embeddings has {join_key} {value!r}"
        rows.append({"key": keys[i], "stage": "join", "reason": reason("no embedding", detail), POS: positions[i]})
    return rows


def _gather(layout: Layout, parts: np.ndarray, rows: np.ndarray, text: bool) -> np.ndarray | None:
    """Rows of the source parts, in the given order, as float16 of unit length (rows whose norm is off by
    more than float16's rounding are renormalised; stored float16 rows come back bit for bit)."""
    if text and (not len(parts) or any(layout.parts[p].text is None for p in np.unique(parts))):
        return None
    out = np.zeros((len(parts), layout.dim), np.float16)
    for p in np.unique(parts):
        at = np.flatnonzero(parts == p)
        out[at] = _unit16(np.asarray(_array(layout, int(p), text)[rows[at]]))
    return out


def _array(layout: Layout, p: int, text: bool):
    part = layout.parts[p]
    path = part.text if text else part.emb
    if path.endswith(".npz"):
        with np.load(path) as z:
            return z[layout.text_column if text else layout.column]
    return np.load(path, mmap_mode="r")


def _unit16(x: np.ndarray) -> np.ndarray:
    x32 = x.astype(np.float32)
    norms = np.linalg.norm(x32, axis=1, keepdims=True)
    off = (np.abs(norms - 1) > 1e-2) & (norms > 0)
    if off.any():
        x32 = np.where(off, x32 / np.where(norms > 0, norms, 1), x32)
        return x32.astype(np.float16)
    return x.astype(np.float16)

