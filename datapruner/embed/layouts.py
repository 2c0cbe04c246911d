"""Precomputed embedding layouts, found from the files themselves (or named by `embeddings_layout`).

    embedding-reader   img_emb/img_emb_{n}.npy + metadata/metadata_{n}.parquet (+ text_emb/text_emb_{n}.npy):
                       clip-retrieval's output, parts of any size holding any shards in any order
                       (its metadata has at least image_path, caption; image_path is the sample key)
    laion              the same files as LAION ships them (metadata image_path, key, url, caption,
                       similarity, width, height, md5, …; float16)
    datacomp           {shard}.parquet (uid, …) beside {shard}.npz holding arrays such as b32_img, l14_img
                       (pick one with `embeddings_column`; {x}_txt beside {x}_img is its text)

A layout is a list of source parts (an embeddings file and its metadata, row for row) and how its rows
meet the shards' samples (`join_key`). It is recorded in run.json (`precomputed`) when the command starts,
and the index/scan/join steps (embed/join.py) read it from there. Only footers and headers are read here
(embed/headers.py): each fault they show is refused in one line before any work.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from datapruner.embed.headers import (ArrayHeader, check_embeddings, npy_header, npz_headers, parquet_columns,
                                      parquet_rows)
from datapruner.errors import DataprunerError

JOIN_ORDER = ("key", "image_path", "uid", "url")  # what `join_key: auto` looks for, in this order
BUCKET_ROWS = 1_000_000  # rows per join bucket: what one join task holds in memory


@dataclass(frozen=True)
class SourcePart:
    emb: str  # .npy (rows × dim) or .npz (holding `column`)
    meta: str  # .parquet, row for row with emb
    rows: int
    text: str | None = None  # text embeddings, row for row (an .npy, or the npz's text array)


@dataclass(frozen=True)
class Layout:
    kind: str
    root: str
    join_key: str  # a column of the metadata
    column: str | None  # the npz array (datacomp)
    text_column: str | None
    dim: int
    parts: tuple[SourcePart, ...]
    buckets: int

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    def part_ids(self) -> list[str]:
        return [f"{i:0{len(str(len(self.parts)))}d}" for i in range(len(self.parts))]

    def bucket_ids(self) -> list[str]:
        return [f"{b:0{len(str(self.buckets))}d}" for b in range(self.buckets)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        return cls(**{**d, "parts": tuple(SourcePart(**p) for p in d["parts"])})

    def summary(self) -> dict:
        """What the embed token depends on: the layout and its files (names and row counts)."""
        return {"layout": self.kind, "join_key": self.join_key, "column": self.column, "rows": self.rows,
                "parts": [[Path(p.emb).name, p.rows] for p in self.parts]}


def detect(root: str | Path, layout: str = "auto", join_key: str = "auto", column: str | None = None) -> Layout:
    root = Path(root)
    kind = layout if layout != "auto" else _kind_of(root)
    if kind == "datacomp":
        parts, col, text_col, dim = _datacomp_parts(root, column)
    else:
        parts, dim = _reader_parts(root)
        col = text_col = None
        if kind == "embedding-reader" and layout == "auto" and {"url", "key", "similarity"} <= _columns(parts):
            kind = "laion"
    if not parts:
        raise DataprunerError(f"--embeddings {root}: no embeddings parts found ({kind} layout)")
    key = _join_key(root, parts, join_key, kind)
    _every_part_has(parts, key)
    buckets = max(1, -(-sum(p.rows for p in parts) // BUCKET_ROWS))
    return Layout(kind, str(root), key, col, text_col, dim, tuple(parts), buckets)


def _kind_of(root: Path) -> str:
    if (root / "img_emb").is_dir():
        return "embedding-reader"
    if any(root.rglob("*.npz")):
        return "datacomp"
    raise DataprunerError(f"--embeddings {root}: neither img_emb/ (embedding-reader, clip-retrieval, LAION) "
                          "nor {shard}.npz + {shard}.parquet files (DataComp); set embeddings_layout to say which")


def _number(path: Path) -> int | None:
    m = re.search(r"(\d+)$", path.stem)
    return int(m.group(1)) if m else None


def _numbered(folder: Path, suffix: str) -> dict[int, Path]:
    found = {}
    for path in folder.glob(f"*{suffix}") if folder.is_dir() else []:
        n = _number(path)
        if n is not None:
            found[n] = path
    return found


def _reader_parts(root: Path) -> tuple[list[SourcePart], int]:
    """img_emb/*_{n}.npy paired with metadata/*_{n}.parquet (and text_emb/*_{n}.npy) by number
    (embedding-reader's sort order); every part's headers and footer are checked."""
    embs = _numbered(root / "img_emb", ".npy")
    if not embs:
        raise DataprunerError(f"--embeddings {root}: img_emb/ holds no img_emb_{{n}}.npy parts")
    metas, texts = _numbered(root / "metadata", ".parquet"), _numbered(root / "text_emb", ".npy")
    _same_numbers(root, embs, metas, texts)
    parts, dim = [], None
    for n in sorted(embs):
        part, d = _reader_part(embs[n], metas[n], texts.get(n))
        if part.rows and dim is not None and d != dim:
            raise DataprunerError(f"{embs[n]} has dimension {d}, other parts {dim}")
        dim = d if part.rows else dim
        parts.append(part)
    return parts, dim or 0


def _same_numbers(root: Path, embs: dict, metas: dict, texts: dict) -> None:
    """Every image part has its metadata (and its text, when there is text), and no part is alone."""
    for n in sorted(embs):
        if n not in metas:
            raise DataprunerError(f"{embs[n]} has no metadata part ({root}/metadata/metadata_{n}.parquet): without "
                                  "it its rows cannot be joined to the shards' samples")
        if texts and n not in texts:
            raise DataprunerError(f"{embs[n]} has no text part ({root}/text_emb/text_emb_{n}.npy) while "
                                  f"{len(texts)} other parts have one: text embeddings must cover every part")
    for name, found in (("metadata", metas), ("text_emb", texts)):
        alone = sorted(set(found) - set(embs))
        if alone:
            raise DataprunerError(f"{found[alone[0]]} has no image part ({root}/img_emb/img_emb_{alone[0]}.npy): "
                                  f"{name}/ and img_emb/ must hold the same parts")


def _reader_part(emb: Path, meta: Path, text: Path | None) -> tuple[SourcePart, int]:
    image = npy_header(emb)
    check_embeddings(str(emb), image)
    rows = parquet_rows(meta)
    if rows != image.rows:
        raise DataprunerError(f"{emb} has {image.rows} rows but {meta} has {rows}: they must match row for row")
    if text is not None:
        _check_text(str(text), npy_header(text), str(emb), image)
    return SourcePart(str(emb), str(meta), image.rows, str(text) if text else None), image.dim


def _check_text(where: str, text: ArrayHeader, image_where: str, image: ArrayHeader) -> None:
    check_embeddings(where, text)
    if text.rows != image.rows:
        raise DataprunerError(f"{where} has {text.rows} rows but {image_where} has {image.rows}: text and image "
                              "embeddings must match row for row")
    if text.rows and text.dim != image.dim:
        raise DataprunerError(f"{where} has dimension {text.dim} but {image_where} has {image.dim}: text and image "
                              "embeddings must come from one model")


def _datacomp_parts(root: Path, column: str | None) -> tuple[list[SourcePart], str, str | None, int]:
    npzs = sorted(root.rglob("*.npz"))
    if not npzs:
        raise DataprunerError(f"--embeddings {root}: no {{shard}}.npz files (DataComp layout)")
    first = npz_headers(npzs[0])
    if not first:
        raise DataprunerError(f"{npzs[0]} holds no arrays: a DataComp npz holds the embeddings (e.g. l14_img)")
    images = [k for k in first if k.endswith("_img")] or list(first)
    col = column or (images[0] if len(images) == 1 else None)
    if col is None:
        raise DataprunerError(f"{npzs[0]} holds several image embeddings ({', '.join(images)}): "
                              "choose one with embeddings_column (--embeddings-column)")
    if col not in first:
        raise DataprunerError(f"{npzs[0]} has no array {col!r} (it has {', '.join(sorted(first))})")
    text_col = col[:-4] + "_txt" if col.endswith("_img") and col[:-4] + "_txt" in first else None
    parts, dim = [], None
    for npz in npzs:
        part, d = _datacomp_part(npz, col, text_col)
        if part.rows and dim is not None and d != dim:
            raise DataprunerError(f"{npz}[{col}] has dimension {d}, other parts {dim}")
        dim = d if part.rows else dim
        parts.append(part)
    return parts, col, text_col, dim or 0


def _datacomp_part(npz: Path, col: str, text_col: str | None) -> tuple[SourcePart, int]:
    meta = npz.with_suffix(".parquet")
    if not meta.exists():
        raise DataprunerError(f"{npz} has no {meta.name} beside it (DataComp layout: uid and metadata per shard)")
    arrays = npz_headers(npz)
    for name in (col, text_col):
        if name is not None and name not in arrays:
            raise DataprunerError(f"{npz} has no array {name!r} (it has {', '.join(sorted(arrays)) or 'none'})")
    image = arrays[col]
    check_embeddings(f"{npz}[{col}]", image)
    rows = parquet_rows(meta)
    if image.rows != rows:
        raise DataprunerError(f"{npz}[{col}] has {image.rows} rows but {meta} has {rows}")
    if text_col is not None:
        _check_text(f"{npz}[{text_col}]", arrays[text_col], f"{npz}[{col}]", image)
    return SourcePart(str(npz), str(meta), rows, str(npz) if text_col else None), image.dim


def _columns(parts: list[SourcePart]) -> set[str]:
    return parquet_columns(Path(parts[0].meta)) if parts else set()


def _join_key(root: Path, parts: list[SourcePart], join_key: str, kind: str) -> str:
    names = _columns(parts)
    if join_key != "auto":
        if join_key not in names:
            raise DataprunerError(f"join_key {join_key!r}: {parts[0].meta} has no such column "
                                  f"(it has {', '.join(sorted(names))})")
        return join_key
    order = ("uid",) + JOIN_ORDER if kind == "datacomp" else JOIN_ORDER
    for name in order:
        if name in names:
            return name
    raise DataprunerError(f"{parts[0].meta} has none of the columns {', '.join(JOIN_ORDER)}: its rows cannot be "
                          "joined to the shards' samples (set join_key to the column that names them)")


def _every_part_has(parts: list[SourcePart], column: str) -> None:
    for part in parts[1:]:
        if column not in parquet_columns(Path(part.meta)):
            raise DataprunerError(f"{part.meta} has no column {column!r}, which {parts[0].meta} joins on: every "
                                  "metadata part must have the join column")


def sample_value(join_key: str, key: str, fields: dict) -> str | None:
    """The value a shard sample is joined on: its key (image_path is the key too), or its json uid/url."""
    if join_key in ("key", "image_path"):
        return key
    value = fields.get(join_key)
    return None if value is None else str(value)
