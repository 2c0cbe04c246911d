"""Student inputs: embeddings (from a run or a precomputed dir) or decoded images (from shards), with labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError


@dataclass
class Split:
    """Student inputs x (float32: (n, d) embeddings or (n, c, h, w) images in [0, 1]) and labels y."""

    x: np.ndarray
    y: np.ndarray  # int64 labels as in the data

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask_or_index) -> "Split":
        return Split(self.x[mask_or_index], self.y[mask_or_index])


def embeddings_root(path: str | Path) -> Path:
    """The folder holding img_emb/ and metadata/: a run dir (RUN/embeddings) or an embeddings dir."""
    path = Path(path)
    for root in (path / "embeddings", path):
        if (root / "img_emb").is_dir() and (root / "metadata").is_dir():
            return root
    raise FileNotFoundError(f"{path} holds no embeddings (expected img_emb/ and metadata/, or embeddings/ inside it)")


def _part_index(p: Path) -> int:
    return int(p.stem.rsplit("_", 1)[1])


def read_embeddings(path: str | Path) -> tuple[np.ndarray, pa.Table]:
    """All parts in part order: (float32 embeddings, metadata table with key [, shard, label])."""
    root = embeddings_root(path)
    embs = sorted((root / "img_emb").glob("img_emb_*.npy"), key=_part_index)
    metas = sorted((root / "metadata").glob("metadata_*.parquet"), key=_part_index)
    if [_part_index(p) for p in embs] != [_part_index(p) for p in metas]:
        raise DataprunerError(f"{root}: img_emb and metadata parts do not match")
    x = np.concatenate([np.load(p).astype(np.float32) for p in embs])
    meta = pa.concat_tables([pq.read_table(p) for p in metas], promote_options="default")
    if len(x) != meta.num_rows:
        raise DataprunerError(f"{root}: {len(x)} embeddings but {meta.num_rows} metadata rows")
    return x, meta


def labels_of(table: pa.Table, where: str) -> np.ndarray:
    """The label column as int64; every row must have one (verify trains classifiers)."""
    if "label" not in table.column_names or table.column("label").null_count:
        missing = table.num_rows if "label" not in table.column_names else table.column("label").null_count
        raise DataprunerError(f"{where}: {missing} samples have no label; verify needs a `cls` member "
                         "(or the json label field) on every sample")
    return table.column("label").to_numpy().astype(np.int64)


def row_ids(table: pa.Table) -> list[tuple[str, str]]:
    shards = table.column("shard").to_pylist() if "shard" in table.column_names else [""] * table.num_rows
    return list(zip(shards, table.column("key").to_pylist()))


def aligned_rows(source: pa.Table, target: pa.Table) -> np.ndarray:
    """For each row of `target`, the index of the row of `source` with the same (shard, key)."""
    where = {rid: i for i, rid in enumerate(row_ids(source))}
    try:
        return np.array([where[rid] for rid in row_ids(target)], np.int64)
    except KeyError as exc:
        raise DataprunerError(f"sample {exc.args[0]} is scored but has no embedding") from None


def embedding_split(path: str | Path, table: pa.Table | None = None) -> Split:
    """Embeddings with labels; rows follow `table` (matched by shard, key) when it is given."""
    x, meta = read_embeddings(path)
    if table is None:
        return Split(x, labels_of(meta, str(path)))
    return Split(x[aligned_rows(meta, table)], labels_of(table, str(path)))


def image_array(data: bytes, size: int, channels: int) -> np.ndarray:
    """One image as float32 (channels, size, size) in [0, 1]."""
    from datapruner.embed.decode import decode_image

    img = decode_image(data).convert("L" if channels == 1 else "RGB").resize((size, size))
    arr = np.asarray(img, np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def wanted_samples(shards: list[str], wanted: set | None = None):
    """(shard, sample) for every readable sample of `shards` (only the `wanted` (shard, key)s if given)."""
    from datapruner.io.shards import open_shard
    from datapruner.io.tar_samples import iter_samples

    for shard in shards:
        with open_shard(shard) as stream:
            for sample in iter_samples(stream):
                if not sample.error and (wanted is None or (shard, sample.key) in wanted):
                    yield shard, sample


def shard_images(shards: list[str], size: int, channels: int, wanted: set | None = None) -> dict:
    """{(shard, key): (image array, label or None)} for the samples of `shards` (only `wanted` ones if given)."""
    from datapruner.embed.decode import UnusableSample, image_bytes, text_fields

    out = {}
    for shard, sample in wanted_samples(shards, wanted):
        try:
            image = image_array(image_bytes(sample.members), size, channels)
            label = text_fields(sample.members, "caption", "label")["label"]
        except UnusableSample:
            continue
        out[(shard, sample.key)] = (image, label)
    return out


def image_split(shards: list[str], size: int, channels: int, table: pa.Table | None = None) -> Split:
    """Decoded images with labels; rows follow `table` (by shard, key) when given, else shard order."""
    wanted = set(row_ids(table)) if table is not None else None
    found = shard_images(shards, size, channels, wanted)
    ids = row_ids(table) if table is not None else list(found)
    missing = [rid for rid in ids if rid not in found]
    if missing:
        raise DataprunerError(f"{len(missing)} scored samples could not be decoded from their shards, e.g. {missing[0]}")
    if not ids:
        raise DataprunerError(f"no decodable labelled images in {len(shards)} shard(s)")
    x = np.stack([found[rid][0] for rid in ids])
    labels = [found[rid][1] for rid in ids]
    if table is not None:
        return Split(x, labels_of(table, "the run's scores"))
    if any(label is None for label in labels):
        raise DataprunerError("some test samples have no label (`cls` member or json label field)")
    return Split(x, np.asarray(labels, np.int64))
