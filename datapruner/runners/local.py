"""The default runner: the embed step in this process (decode workers beside it), map steps in a pool."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable

from tqdm import tqdm

from datapruner.config import Config
from datapruner.io.rundir import RunDir


class LocalRunner:
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def embed(self, run: RunDir, shards: list[str], cfg: Config, progress: bool = True,
              parts: list[int] | None = None) -> dict:
        from datapruner.embed.step import embed_tasks, pending_tasks

        return embed_tasks(run, pending_tasks(run, shards, parts), len(shards), cfg, progress=progress)

    def map(self, fn: Callable, items: Iterable, desc: str, progress: bool = True) -> list:
        """fn(item) for every item, in order; `workers` > 1 uses processes."""
        items = list(items)
        if self.cfg.workers <= 1 or len(items) <= 1:
            return [fn(item) for item in tqdm(items, desc=desc, unit="part", disable=not progress)]
        with ProcessPoolExecutor(self.cfg.workers) as pool:
            return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, unit="part", disable=not progress))
