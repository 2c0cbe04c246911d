"""The functions the CLI, Airflow and Ray fronts call. Each takes a run directory and a Config.

Every function is one command of `steps.COMMANDS`: it opens a session on the run (checks that --out
is ours to write, takes the run's lock, records the inputs) and runs the command's steps from the
step table in order. Finished parts are skipped, so rerunning a command resumes it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.steps import COMMANDS, Context, get_step, run_step

_held = threading.local()  # run roots this thread holds the lock of (api calls nest, e.g. verify → score)


@contextmanager
def session(run: str | Path, cfg: Config, command: str, src: str | None = None, progress: bool = True,
            scope: str | None = None) -> Iterator[Context]:
    """A run directory opened for `command`: options checked (before anything is read or written),
    ownership checked, lock held, SRC and embed inputs recorded."""
    from datapruner.io.ownership import check_out
    from datapruner.validate import check_config

    check_config(cfg, command, src)
    rd = RunDir(run)
    key = str(rd.root.resolve())
    held = getattr(_held, "roots", set())
    shards, skipped = _list_source(src, cfg) if src is not None else ([], [])
    if key in held:
        yield _open(rd, cfg, src, (shards, skipped), progress, record_config=False)
        return
    check_out(rd.root, src, shards, [cfg.embeddings] if cfg.embeddings else [])
    if src is None:
        rd.read_run_json()  # a RUN-only command needs an existing run
    with rd.lock(command, scope):
        _held.roots = held | {key}
        try:
            yield _open(rd, cfg, src, (shards, skipped), progress)
        finally:
            _held.roots = held


def _list_source(src: str, cfg: Config) -> tuple[list[str], list[str]]:
    from datapruner.io.shards import list_source

    return list_source(src, allow_pipe=cfg.allow_pipe)


def _open(rd: RunDir, cfg: Config, src: str | None, listing: tuple[list[str], list[str]], progress: bool,
          record_config: bool = True) -> Context:
    shards, skipped = listing
    if src is not None:
        from datapruner.embed import inputs
        from datapruner.io.runinfo import check_shards, start_run

        if cfg.embeddings:
            from datapruner.embed.precomputed import check_layout

            check_layout(cfg, shards)
        check_shards(rd, shards)
        inputs.check(rd, cfg)
        start_run(rd, src, shards, skipped, cfg)
        inputs.record(rd, cfg)
    elif record_config:
        rd.update_run_json(config=cfg.to_dict())
    return Context(rd, cfg, progress=progress)


def _run_steps(name: str, steps: tuple[str, ...], run: str | Path, cfg: Config, src: str | None, progress: bool,
               parts: list[int] | None) -> dict:
    """`steps` in one session named `name`; `parts` (indices) limits the map steps, for an orchestrator's
    mapped task, which may share the run with the other tasks of its step."""
    scope = None if parts is None else f"{name}-{min(parts, default=0)}-{max(parts, default=0)}"
    with session(run, cfg, name, src, progress, scope) as ctx:
        summary = {}
        for s in steps:
            summary[s] = run_step(ctx, s, indices=parts)
            _record_timing(ctx.run, s, summary[s])
        if "embed" in steps:
            summary["counts"] = _record_counts(ctx.run)
        return summary


def _record_timing(rd: RunDir, step: str, summary: dict) -> None:
    """run.json `timings`: the seconds of each step's last run that did work (the report shows them)."""
    if summary.get("parts", 0) > summary.get("parts_reused", 0) and "seconds" in summary:
        timings = rd.read_run_json().get("timings", {})
        rd.update_run_json(timings={**timings, step: summary["seconds"]})


def command(name: str, run: str | Path, cfg: Config = Config(), src: str | None = None, progress: bool = True,
            parts: list[int] | None = None) -> dict:
    """Run one command of steps.COMMANDS; returns {step: summary}."""
    return _run_steps(name, COMMANDS[name], run, cfg, src, progress, parts)


def step(name: str, run: str | Path, cfg: Config = Config(), src: str | None = None, progress: bool = True,
         parts: list[int] | None = None) -> dict:
    """Run one step of the table by name (an orchestrator's task: Airflow runs one per step)."""
    get_step(name)
    summary = _run_steps(name, (name,), run, cfg, src, progress, parts)
    return {**summary[name], **({"counts": summary["counts"]} if "counts" in summary else {})}


def _record_counts(rd: RunDir) -> dict:
    from datapruner.embed.outputs import count_parts

    recorded = rd.read_run_json()
    counts = {**count_parts(rd), "skipped_files": len(recorded.get("skipped", []))}
    rd.update_run_json(counts={**recorded.get("counts", {}), **counts})
    return counts


def embed(src: str, run: str | Path, cfg: Config = Config(), progress: bool = True,
          parts: list[int] | None = None) -> dict:
    """Embed every shard of `src` (or the shards with indices `parts`) into RUN/embeddings."""
    return command("embed", run, cfg, src, progress, parts)


def cluster(run: str | Path, cfg: Config = Config()) -> dict:
    """Fit spherical k-means centroids on a sample of the run's embeddings."""
    return command("cluster", run, cfg, progress=False)


def score(run: str | Path, cfg: Config = Config(), progress: bool = True, parts: list[int] | None = None) -> dict:
    """Assign every sample to its centroid, fit the metrics that need it, score every part (scores/)."""
    return command("score", run, cfg, progress=progress, parts=parts)


def select(run: str | Path, keep: float | None = None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Write manifest/ for a keep fraction (scoring first what the policy needs and the scores lack).

    Pruned shards of an earlier selection are removed (the summary says so) and the report is rebuilt,
    so RUN never shows a selection its manifest does not hold.
    """
    cfg = cfg if keep is None else cfg.replace(keep=keep)
    return command("select", run, cfg, progress=progress)


def write(run: str | Path, cfg: Config = Config(), progress: bool = True, parts: list[int] | None = None) -> dict:
    """Copy the manifest's kept samples, byte for byte, into RUN/shards/ (only output shards `parts`)."""
    return command("write", run, cfg, progress=progress, parts=parts)


def report(run: str | Path, cfg: Config = Config()) -> str:
    """RUN/report/index.html: summary, score and cluster plots, galleries of kept vs. dropped samples."""
    command("report", run, cfg, progress=False)
    return str(RunDir(run).report_html)


def prune(src: str, run: str | Path, keep: float | None = None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Everything, end to end: every step of the table, embed through report."""
    cfg = cfg if keep is None else cfg.replace(keep=keep)
    return command("prune", run, cfg, src, progress)


def partition(step: str, run: str | Path, cfg: Config = Config(), groups: int = 8, src: str | None = None) -> list[list[int]]:
    """Split a map step's parts into at most `groups` contiguous groups of part indices, for an
    orchestrator that runs each group as its own task (Airflow mapped tasks). For `write` this runs
    the plan step first (run it after select); for `embed` it needs `src`."""
    from datapruner.errors import DataprunerError
    from datapruner.steps import MAP_STEPS

    if step not in MAP_STEPS:
        raise DataprunerError(f"partition: {step!r} is not a map step; use one of {', '.join(MAP_STEPS)}")
    with session(run, cfg, f"partition {step}", src, progress=False) as ctx:
        if step == "write":
            run_step(ctx, "plan")
        count = len(get_step(step).parts(ctx))
    size = -(-count // max(1, groups)) if count else 1
    return [list(range(lo, min(lo + size, count))) for lo in range(0, count, size)]


def load_scores(run: str | Path):
    """All score parts as one pyarrow Table (with uid/caption/label/offset/length from metadata)."""
    from datapruner.select.scores import load_scores as load

    return load(RunDir(run))


def verify(run: str | Path, spec=None, cfg: Config = Config(), progress: bool = True) -> dict:
    """Train a teacher and students on the subsets each method keeps; RUN/verify (see verify/pipeline.py)."""
    from datapruner.verify.pipeline import VerifySpec, run_verify

    spec = spec or VerifySpec()
    with session(run, cfg, "verify", spec.src, progress):
        return run_verify(run, cfg, spec, progress)
