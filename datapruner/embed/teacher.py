"""The teacher's view of a kept sample: its stored image (and text) embedding, as the .npy members that
`write --with-embeddings` adds to it and the reader (datapruner.data) yields beside its members.

Row i of `img_emb_{part}.npy` (and `text_emb_{part}.npy`) is row i of `metadata_{part}.parquet`, whose `key`
column finds a sample's row."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

IMG_MEMBER, TXT_MEMBER = "img_emb.npy", "txt_emb.npy"
CACHED_PARTS = 4  # parts whose key index and arrays are held at once (readers go shard after shard)


def npy_bytes(row: np.ndarray) -> bytes:
    """One embedding as a float16 .npy file (what webdataset's decode and np.load read back)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(row, np.float16), allow_pickle=False)
    return buf.getvalue()


class TeacherEmbeddings:
    """{member: .npy bytes} of a sample (shard, key) of the run, read from RUN/embeddings part by part."""

    def __init__(self, run: RunDir):
        self.run = run
        self._part_of = dict(zip(run.shards(), run.part_ids()))
        self._parts: dict[str, tuple[dict, np.ndarray, np.ndarray | None]] = {}

    def members(self, shard: str, key: str) -> dict[str, bytes]:
        rows, img, txt = self._part(shard)
        if key not in rows:
            raise DataprunerError(f"sample {key!r} of {shard} has no stored embedding in {self.run.embeddings_root}")
        i = rows[key]
        found = {IMG_MEMBER: npy_bytes(img[i])}
        if txt is not None:
            found[TXT_MEMBER] = npy_bytes(txt[i])
        return found

    def _part(self, shard: str) -> tuple[dict, np.ndarray, np.ndarray | None]:
        part = self._part_of.get(shard)
        if part is None:
            raise DataprunerError(f"{shard} is not a source shard of {self.run.root}: it has no stored embeddings")
        if part not in self._parts:
            if len(self._parts) >= CACHED_PARTS:
                self._parts.pop(next(iter(self._parts)))
            self._parts[part] = self._load(part)
        return self._parts[part]

    def _load(self, part: str) -> tuple[dict, np.ndarray, np.ndarray | None]:
        keys = pq.read_table(self.run.metadata(part), columns=["key"]).column("key").to_pylist()
        img = np.load(self.run.img_emb(part), mmap_mode="r")
        text_path = self.run.text_emb(part)
        txt = np.load(text_path, mmap_mode="r") if text_path.exists() else None
        if img.shape[0] != len(keys) or (txt is not None and txt.shape[0] != len(keys)):
            raise DataprunerError(f"the embeddings of part {part} do not have one row per row of "
                                  f"{self.run.metadata(part)}: re-embed the run")
        return {k: i for i, k in enumerate(keys)}, img, txt
