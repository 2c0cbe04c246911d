"""KeptSamples: a torch IterableDataset of a run's kept samples, read in place (docs/training.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from datapruner.data.fetch import coalesced, is_gzip, members_of, read, stored_size
from datapruner.data.kept import load_kept
from datapruner.data.order import epoch_order, rank_order, worker_positions
from datapruner.embed.teacher import TeacherEmbeddings
from datapruner.errors import DataprunerError


class KeptSamples(torch.utils.data.IterableDataset):
    """The samples a pruned shard would hold, as webdataset dicts ({"__key__", "__url__", ext: bytes}),
    each kept sample once per epoch across all ranks and DataLoader workers.

    source: a run directory (or its manifest/keep.parquet). seed, shuffle, buffer: the epoch's shuffle of
    shard order, then of samples within buffers of `buffer`. rank, world_size: this process's share (found
    from torch.distributed when initialised, else 0 of 1). block: samples a worker hands its DataLoader at
    once (its batch_size; 1 with batch_size=None), for exact resumption. embeddings: add the stored
    img_emb.npy (and txt_emb.npy) float16 members."""

    def __init__(self, source: str | Path, *, seed: int = 0, shuffle: bool = True, buffer: int = 1000,
                 rank: int | None = None, world_size: int | None = None, block: int = 1,
                 embeddings: bool = False, allow_pipe: bool = False):
        super().__init__()
        self.kept, run = load_kept(source, allow_pipe)
        if embeddings and run is None:
            raise DataprunerError(f"{source}: the stored embeddings are read from a run directory; give the run")
        if buffer < 1 or block < 1:
            raise DataprunerError(f"buffer and block must be at least 1 (got {buffer}, {block})")
        self.run, self.embeddings = run, embeddings
        self.seed, self.shuffle, self.buffer, self.block = seed, shuffle, buffer, block
        self._given = (rank, world_size)
        self.epoch = self.position = 0
        self.bytes_read = 0  # stored bytes this process read (a DataLoader worker counts its own)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` from its beginning at the next iteration."""
        self.epoch, self.position = epoch, 0

    def state_dict(self, consumed: int = 0) -> dict:
        """Where to resume: this rank has consumed `consumed` samples since its iteration began."""
        return {"epoch": self.epoch, "position": self.position + consumed}

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next iteration yields the rest of epoch state["epoch"] after state["position"]."""
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def rank_rows(self) -> np.ndarray:
        """Rows of `kept` this rank yields in the current epoch, in order (before any resume)."""
        rank, world = rank_and_world(*self._given)
        order = epoch_order(self.kept.shard, len(self.kept.shards), self.seed, self.epoch, self.shuffle)
        return rank_order(order, rank, world, self.buffer, [self.seed, self.epoch, rank] if self.shuffle else None)

    def __len__(self) -> int:
        return len(self.rank_rows())

    def __iter__(self) -> Iterator[dict]:
        rows = self.rank_rows()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = rows[worker_positions(len(rows), worker, workers, self.block, self.position)]
        yield from self._samples(mine)

    def _samples(self, rows: np.ndarray) -> Iterator[dict]:
        teacher = TeacherEmbeddings(self.run) if self.embeddings else None
        pending: dict[int, bytes] = {}
        gzipped: dict[int, bool] = {}
        for lo in range(0, len(rows), self.buffer):
            group = rows[lo:lo + self.buffer]
            self._fetch([r for r in group.tolist() if r not in pending], rows[lo:], pending, gzipped)
            for row in group.tolist():
                yield self._sample(row, pending.pop(row), teacher)

    def _fetch(self, wanted: list[int], rest: np.ndarray, pending: dict, gzipped: dict) -> None:
        """Read the rows `wanted` into `pending`, shard by shard; for a gzip shard, every row of it still to
        come (`rest`), so that it is decompressed once."""
        kept = self.kept
        for s in sorted({int(kept.shard[r]) for r in wanted}):
            url = kept.shards[s]
            if s not in gzipped:
                gzipped[s] = is_gzip(url)
            rows = np.array(wanted, np.int64)
            if gzipped[s]:
                rows = np.array([r for r in rest[kept.shard[rest] == s].tolist() if r not in pending], np.int64)
            rows = rows[kept.shard[rows] == s]
            self._read_rows(url, np.sort(rows), gzipped[s], pending)

    def _read_rows(self, url: str, rows: np.ndarray, gzip: bool, pending: dict) -> None:
        offsets, lengths = self.kept.offset[rows], self.kept.length[rows]
        reads = coalesced(offsets, lengths)
        for (start, _, covered), data in zip(reads, read(url, reads, gzip)):
            view = memoryview(data)
            for i in covered:
                lo = int(offsets[i]) - start
                pending[int(rows[i])] = bytes(view[lo:lo + int(lengths[i])])
            self.bytes_read += len(data) if not gzip else 0
        if gzip:
            self.bytes_read += stored_size(url)

    def _sample(self, row: int, data: bytes, teacher: TeacherEmbeddings | None) -> dict:
        kept = self.kept
        url, key = kept.shards[kept.shard[row]], kept.keys[row].as_py()
        sample = {"__key__": key, "__url__": url, **members_of(data, key, url, int(kept.offset[row]))}
        if teacher is not None:
            sample.update(teacher.members(url, key))
        return sample


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The rank and world size given, else torch.distributed's when it is initialised, else (0, 1)."""
    if rank is None and world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    if rank is None or world_size is None or not 0 <= rank < world_size:
        raise DataprunerError(f"give rank and world_size together, 0 <= rank < world_size (got {rank}, {world_size})")
    return rank, world_size
