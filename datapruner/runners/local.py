"""The default runner: a map step's parts in this process, or in a process pool (`workers` > 1).

A step with a per-process setup (the embed model) runs in this process with its setup done once:
its own DataLoader workers already decode beside it.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from datapruner import progress as progress_
from datapruner.config import Config


class LocalRunner:
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def map(self, task, parts: list[str], desc: str, progress: bool = True) -> list[dict]:
        """Run `task` over `parts`; returns each part's result, in the order the parts finished.
        Progress: a bar on a terminal, `datapruner.progress` log lines elsewhere (datapruner/progress.py)."""
        results = []
        with progress_.bar(desc, total=len(parts), unit="part", enabled=progress) as bar:
            if task.has_setup or self.cfg.workers <= 1 or len(parts) <= 1:
                for _, result in task(task.setup(), parts):
                    results.append(result)
                    bar.update(1)
                return results
            with ProcessPoolExecutor(self.cfg.workers) as pool:
                for batch in pool.map(run_batch, [task] * len(parts), [[p] for p in parts]):
                    results.extend(r for _, r in batch)
                    bar.update(len(batch))
        return results


def run_batch(task, parts: list[str]) -> list[tuple[str, dict]]:
    return list(task(task.setup(), parts))
