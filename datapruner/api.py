"""The functions the CLI, Airflow and Ray fronts call. Each takes a run directory and a Config."""

from __future__ import annotations

from pathlib import Path

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.io.runinfo import start_run
from datapruner.io.shards import list_shards


def embed(src: str, run: str | Path, cfg: Config = Config(), progress: bool = True) -> dict:
    """Embed every shard of `src` into RUN/embeddings (finished shards are skipped on a rerun)."""
    from datapruner.runners import get_runner

    rd = RunDir(run)
    shards = list_shards(src, allow_pipe=cfg.allow_pipe)
    start_run(rd, src, shards, cfg)
    if cfg.embeddings:
        from datapruner.embed.precomputed import link_precomputed

        return link_precomputed(rd, cfg.embeddings, shards)
    totals = get_runner(cfg).embed(rd, shards, cfg, progress)
    return _record_counts(rd, "embed", totals)


def _record_counts(rd: RunDir, step: str, totals: dict) -> dict:
    from datapruner.embed.outputs import count_parts

    counts = count_parts(rd)
    info = rd.read_run_json()
    rd.update_run_json(counts={**info.get("counts", {}), **counts})
    return {**totals, **counts}
