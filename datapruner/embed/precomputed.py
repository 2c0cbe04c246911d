"""Embeddings that already exist (clip-retrieval / embedding-reader, LAION, DataComp) instead of embedding.

The folder is read-only. Its layout is found when the command starts (embed/layouts.py) and recorded in
run.json; the index, scan and join steps (embed/join.py) match its rows to the shards' samples, and the
embed step, here, writes the run's OWN per-shard parts from the matches: img_emb_{i}.npy (float16 unit
rows), metadata_{i}.parquet (shard, key, offset, length, uid, caption, label as a direct embedding writes
them, then the source's extra columns) and errors/part-{i} (a sample without an embedding is invalid at
`join` with "no embedding"; one whose row could not be read, at `embed` with "unreadable embedding"; one
whose row is not finite or zero, at `embed` with "bad embedding", embed/bad_rows.py). Every later step
then reads RUN/embeddings as after a direct embedding.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.embed.headers import one_line
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
    """Checked when the command starts, before anything is written: the layout, its parts' headers and
    footers (dtype, rank, dimension, image against text, row and part counts) and the join column."""
    return resolve(cfg)


def build_part(run: RunDir, layout: Layout, part: str) -> dict:
    shard = run.shard_of(part)
    samples = pq.read_table(run.join_samples(part))
    scan_errors = pq.read_table(run.join_scan_errors(part)).to_pylist()
    matches = _matches(run, layout, part)
    source_of, row_of, match_of = _sources(samples, matches)
    chosen = np.flatnonzero(source_of >= 0)
    img, txt, unreadable = _gather(layout, source_of[chosen], row_of[chosen])
    failed = np.isin(source_of[chosen], list(unreadable))
    errors = scan_errors + _missing(samples, source_of, layout.join_key) + \
        _unreadable(samples, chosen[failed], source_of, unreadable)
    chosen, img, txt = chosen[~failed], img[~failed], None if txt is None else txt[~failed]
    meta = _part_metadata(samples, matches, chosen, match_of)
    errors = [{k: v for k, v in e.items() if k != POS} for e in sorted(errors, key=lambda e: e[POS])]
    bad = write_embed_table(run, part, shard, img, txt, meta, errors)
    return {"samples": len(chosen) - bad, "errors": len(errors) + bad, "shards": 1,
            "no_embedding": int((source_of < 0).sum()), "unreadable_embedding": int(failed.sum()),
            "bad_embeddings": bad}


def _matches(run: RunDir, layout: Layout, part: str) -> pa.Table | None:
    """The shard's matches: its row group of every bucket's file."""
    found = [read_group(run.join_matches(b), int(part)) for b in layout.bucket_ids()]
    found = [t.replace_schema_metadata(None) for t in found if t is not None]
    return pa.concat_tables(found, promote_options="permissive") if found else None


def _sources(samples: pa.Table, matches: pa.Table | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: its source part (-2: no row holds its value; -1: ambiguous), row and match."""
    source_of = np.full(samples.num_rows, -2, np.int64)
    row_of = np.full(samples.num_rows, -1, np.int64)
    match_of = np.full(samples.num_rows, -1, np.int64)
    if matches is not None and matches.num_rows:
        index_of = {int(p): i for i, p in enumerate(samples.column(POS).to_numpy())}
        at = np.array([index_of[int(p)] for p in matches.column(POS).to_numpy()], np.int64)
        source_of[at] = matches.column(PART).to_numpy()
        row_of[at] = matches.column(ROW).to_numpy()
        match_of[at] = np.arange(matches.num_rows)
    return source_of, row_of, match_of


def _part_metadata(samples: pa.Table, matches: pa.Table | None, chosen: np.ndarray, match_of: np.ndarray) -> pa.Table:
    """The chosen samples' metadata, then the source's columns that are not ours."""
    meta = samples.take(pa.array(chosen, pa.int64())).drop_columns([POS, VALUE])
    if matches is not None:
        picked = matches.take(pa.array(match_of[chosen], pa.int64()))
        for name in sorted(set(picked.column_names) - set(INTERNAL) - set(meta.column_names)):
            meta = meta.append_column(name, picked.column(name))
    return meta


def _unreadable(samples: pa.Table, at: np.ndarray, source_of: np.ndarray, why: dict[int, str]) -> list[dict]:
    """Samples whose embeddings file failed while it was read (a corrupt body the headers could not show)."""
    keys, positions = samples.column("key").to_pylist(), samples.column(POS).to_pylist()
    return [{"key": keys[i], "stage": "embed", "reason": reason("unreadable embedding", why[int(source_of[i])]),
             POS: positions[i]} for i in at]


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


def _gather(layout: Layout, parts: np.ndarray, rows: np.ndarray):
    """Rows of the source parts, in the given order, as float16 of unit length (rows whose norm is off by
    more than float16's rounding are renormalised; stored float16 rows come back bit for bit), text too
    when every part has it; and {source part: why it could not be read}."""
    with_text = bool(len(parts)) and all(layout.parts[p].text is not None for p in np.unique(parts))
    img = np.zeros((len(parts), layout.dim), np.float16)
    txt = np.zeros_like(img) if with_text else None
    unreadable = {}
    for p in np.unique(parts):
        at = np.flatnonzero(parts == p)
        try:
            image = _read_rows(layout, int(p), rows[at], text=False)
            text = _read_rows(layout, int(p), rows[at], text=True) if with_text else None
        except READ_ERRORS as exc:
            unreadable[int(p)] = f"{_source_name(layout, int(p))}: {one_line(exc)}"
            continue
        img[at] = _unit16(image)
        if with_text:
            txt[at] = _unit16(text)
    return img, txt, unreadable


# what reading a file whose headers were fine may still raise: a corrupt zip member, an I/O error, a file
# that shrank since the command started
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_rows(layout: Layout, p: int, rows: np.ndarray, text: bool) -> np.ndarray:
    part = layout.parts[p]
    path = part.text if text else part.emb
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return z[layout.text_column if text else layout.column][rows]
    return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[rows])


def _source_name(layout: Layout, p: int) -> str:
    path = Path(layout.parts[p].emb)
    return str(path.relative_to(layout.root)) if path.is_relative_to(layout.root) else path.name


def _unit16(x: np.ndarray) -> np.ndarray:
    """Rows within 1 % of unit length as they are (in float16); others divided by their norm, taken on the
    row scaled by its largest component so that no finite row overflows or underflows. Rows that are not
    finite or are zero stay so (embed/bad_rows.py makes their samples invalid)."""
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        peak = np.max(np.abs(x64), axis=1, keepdims=True) if x.size else np.zeros((len(x), 1))
        usable = np.isfinite(peak) & (peak > 0)
        scaled = np.where(usable, x64 / np.where(usable, peak, 1), 1.0)
        norms = np.linalg.norm(scaled, axis=1, keepdims=True)
        off = usable & ~(np.abs(peak * norms - 1) <= 1e-2)
        if not off.any():
            return x.astype(np.float16)
        return np.where(off, scaled / norms, x64).astype(np.float16)
