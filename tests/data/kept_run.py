"""A scored run over real shards for the reader's tests: plain tars, a .tar.gz, a shard with a repeated key."""

from __future__ import annotations

import gzip
from pathlib import Path

from conftest import TINY
from shardmaker import sample_members, write_tar

from datapruner import api
from datapruner.config import Config

CFG = Config(**{**TINY, "batch_size": 16}, clusters=3, shard_size=7, embed_text=True)


def write_source(root: Path) -> Path:
    """4 shards × 12 samples: shard 1 gzip (named .tar.gz), shard 2 with key 000025 twice (the second copy,
    further on, is invalid: `duplicate key`), shard 3 gzip named .tar."""
    for s in range(4):
        samples = [(f"{12 * s + j:06d}", sample_members(12 * s + j, j % 4, ["jpg", "png"][j % 2])) for j in range(12)]
        if s == 2:
            samples.insert(9, ("000025", sample_members(999, 1, "png")))
        path = write_tar(root / f"shard-{s}.tar", samples)
        if s in (1, 3):
            name = path.with_suffix(".tar.gz") if s == 1 else path
            data = gzip.compress(path.read_bytes(), mtime=0)
            path.unlink()
            name.write_bytes(data)
    return root


def scored_run(root: Path, keep: float = 0.5) -> Path:
    src = write_source(root / "src")
    run = root / "run"
    api.score(f"{src}/shard-{{0..3}}.tar*", run, keep, CFG, progress=False)
    return run
