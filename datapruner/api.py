"""The functions the CLI, Airflow and Ray fronts call. Each takes a run directory and a Config."""

from __future__ import annotations

from pathlib import Path

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.io.runinfo import start_run
from datapruner.io.shards import list_shards


def embed(src: str, run: str | Path, cfg: Config = Config(), progress: bool = True,
          parts: list[int] | None = None) -> dict:
    """Embed every shard of `src` (or the shards with indices `parts`) into RUN/embeddings; finished
    shards are skipped on a rerun."""
    from datapruner.runners import get_runner

    rd = RunDir(run)
    shards = list_shards(src, allow_pipe=cfg.allow_pipe)
    start_run(rd, src, shards, cfg)
    if cfg.embeddings:
        from datapruner.embed.precomputed import link_precomputed

        return link_precomputed(rd, cfg.embeddings, shards)
    totals = get_runner(cfg).embed(rd, shards, cfg, progress, parts)
    return _record_counts(rd, "embed", totals)


def _record_counts(rd: RunDir, step: str, totals: dict) -> dict:
    from datapruner.embed.outputs import count_parts

    counts = count_parts(rd)
    info = rd.read_run_json()
    rd.update_run_json(counts={**info.get("counts", {}), **counts})
    return {**totals, **counts}


def cluster(run: str | Path, cfg: Config = Config()) -> dict:
    """Fit spherical k-means centroids on a sample of the run's embeddings (reused when unchanged)."""
    from datapruner.cluster.kmeans import cluster as fit

    return fit(RunDir(run), cfg)


def fit_metrics(run: str | Path, cfg: Config = Config()) -> dict:
    """The barrier half of scoring (e.g. EL2N's probes, SemDeDup's per-cluster pass); reused when fitted."""
    from datapruner.metrics.step import fit_metrics as fit, metrics_needed

    fit(RunDir(run), cfg)
    return {"metrics": metrics_needed(cfg)}


def score_samples(run: str | Path, cfg: Config = Config(), progress: bool = True,
                  parts: list[int] | None = None) -> dict:
    """Assign every sample (or those of the parts with indices `parts`) to its centroid and score it
    with the policy's metrics (scores/)."""
    from datapruner.metrics.step import score_all
    from datapruner.runners import get_runner

    return score_all(RunDir(run), cfg, get_runner(cfg), progress, parts)


def load_scores(run: str | Path):
    """All score parts as one pyarrow Table (with uid/caption/label/offset/length from metadata)."""
    from datapruner.select.scores import load_scores as load

    return load(RunDir(run))


def select(run: str | Path, keep: float | None = None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Write manifest/ for a keep fraction. Reads only the scores (seconds); a policy that needs a
    metric the scores lack scores it first (no re-embedding)."""
    from datapruner.metrics.step import scores_cover
    from datapruner.select.manifest import build_manifest

    if not scores_cover(RunDir(run), cfg):
        score_samples(run, cfg, progress)
    return build_manifest(RunDir(run), cfg.keep if keep is None else keep, cfg)


def write(run: str | Path, cfg: Config = Config(), progress: bool = True, parts: list[int] | None = None) -> dict:
    """Copy the manifest's kept samples, byte for byte, into RUN/shards/ (only the output shards with
    indices `parts`, when given)."""
    from datapruner.io.shard_writer import write_shards
    from datapruner.runners import get_runner

    return write_shards(RunDir(run), cfg.shard_size, get_runner(cfg), progress, parts)


MAP_STEPS = ("embed", "score_samples", "write")


def partition(step: str, run: str | Path, cfg: Config = Config(), groups: int = 8, src: str | None = None) -> list[list[int]]:
    """Split a map step's parts into at most `groups` contiguous groups, for an orchestrator that runs
    each group as its own task (e.g. Airflow mapped tasks): embed → shard indices (needs `src`),
    score_samples → part indices, write → output shard indices (this plans the write: run it after select)."""
    from datapruner.io.shard_writer import plan_write

    if step == "embed":
        count = len(list_shards(src, allow_pipe=cfg.allow_pipe))
    elif step == "score_samples":
        count = len(RunDir(run).part_ids())
    elif step == "write":
        count = plan_write(RunDir(run), cfg.shard_size)[2]
    else:
        raise ValueError(f"partition: {step!r} is not a map step; use one of {', '.join(MAP_STEPS)}")
    size = -(-count // max(1, groups)) if count else 1
    return [list(range(lo, min(lo + size, count))) for lo in range(0, count, size)]


def score(src: str, run: str | Path, keep: float | None = None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Everything, end to end: embed → cluster → score → select → write. Finished parts are reused."""
    keep = cfg.keep if keep is None else keep
    summary = {"embed": embed(src, run, cfg, progress)}
    summary["cluster"] = cluster(run, cfg)
    summary["score"] = score_samples(run, cfg, progress)
    summary["select"] = select(run, keep, cfg)
    summary["write"] = write(run, cfg, progress)
    summary["report"] = report(run)
    return summary


def report(run: str | Path) -> str:
    """RUN/report/index.html: summary, score and cluster plots, galleries of kept vs. dropped samples."""
    from datapruner.report.html import build_report

    return build_report(RunDir(run))
