"""A session on a run directory: open it for a command, run the command's steps from the table, record
what they counted.

Opening a run checks every option (before anything is read or written), checks the headers of the
precomputed embeddings, checks that --out is ours to write, takes the run's lock and records SRC and the
embed inputs. Finished parts are skipped, so rerunning
a command resumes it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import Context
from datapruner.steps.loop import run_step
from datapruner.steps.table import COMMANDS, MAP_STEPS, get_step

_held = threading.local()  # run roots this thread holds the lock of (sessions nest, e.g. verify → embed)


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
    if src is not None and cfg.embeddings:
        _check_embeddings(cfg, shards)  # before --out is created: a refused DIR leaves nothing behind
    if key in held:
        yield _open(rd, cfg, src, (shards, skipped), progress, record_config=False)
        return
    check_out(rd.root, src, shards, [cfg.embeddings] if cfg.embeddings else [])
    if src is None:
        rd.read_run_json()  # a RUN-only command needs an existing run
        _refuse_recorded_pipes(rd, cfg, command)
    with rd.lock(command, scope):
        _held.roots = held | {key}
        try:
            yield _open(rd, cfg, src, (shards, skipped), progress)
        finally:
            _held.roots = held


def _list_source(src: str, cfg: Config) -> tuple[list[str], list[str]]:
    from datapruner.io.shards import list_source

    return list_source(src, allow_pipe=cfg.allow_pipe)


def _refuse_recorded_pipes(rd: RunDir, cfg: Config, command: str) -> None:
    """A command that copies source bytes (plan, write) reads a pipe: shard, which runs its shell command,
    only when this command allows it (--allow-pipe): what run.json records never does."""
    from datapruner.io.shards import refuse_pipe
    from datapruner.validate import command_steps

    if {"plan", "write"} & set(command_steps(command)):
        refuse_pipe(rd.shards(), cfg.allow_pipe is True, str(rd.run_json))


def _check_embeddings(cfg: Config, shards: list[str]) -> None:
    """The precomputed layout, from its headers and footers only: each fault is one line, before any work."""
    from datapruner.embed.precomputed import check_layout

    check_layout(cfg, shards)


def _open(rd: RunDir, cfg: Config, src: str | None, listing: tuple[list[str], list[str]], progress: bool,
          record_config: bool = True) -> Context:
    shards, skipped = listing
    rd.rename_step_markers(RENAMED_STEPS)
    if src is not None:
        from datapruner.io.runinfo import check_shards, start_run
        from datapruner.steps import embed_inputs

        check_shards(rd, shards)
        embed_inputs.check(rd, cfg)
        start_run(rd, src, shards, skipped, cfg)
        embed_inputs.record(rd, cfg)
    elif record_config:
        rd.update_run_json(config=cfg.to_dict())
    return Context(rd, cfg, progress=progress)


RENAMED_STEPS = {"score": "measure"}  # markers of runs made before a step was renamed: {old: new}


def run_command(name: str, run: str | Path, cfg: Config, src: str | None = None, progress: bool = True,
                parts: list[int] | None = None, steps: tuple[str, ...] | None = None) -> dict:
    """The steps of command `name` (or `steps`) in one session; `parts` (indices) limits the map steps, for
    an orchestrator's mapped task, which may share the run with the other tasks of its step. Returns
    {step: summary}, and the counts when embed ran."""
    steps = COMMANDS[name] if steps is None else steps
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
    """run.json `timings`: the seconds of each step's last run that did work (the report shows them); `driver`: that
    run's CPU seconds in the driver process and the driver's peak RSS (the rest ran in the runner's workers)."""
    if summary.get("parts", 0) > summary.get("parts_reused", 0) and "seconds" in summary:
        recorded = rd.read_run_json()
        driver = {k: summary[k] for k in ("driver_cpu_seconds", "driver_peak_rss_mib") if k in summary}
        rd.update_run_json(timings={**recorded.get("timings", {}), step: summary["seconds"]},
                           driver={**recorded.get("driver", {}), step: driver})


def _record_counts(rd: RunDir) -> dict:
    from datapruner.embed.counts import count_parts

    recorded = rd.read_run_json()
    counts = {**count_parts(rd), "skipped_files": len(recorded.get("skipped", []))}
    rd.update_run_json(counts={**recorded.get("counts", {}), **counts})
    return counts


def partition(step: str, run: str | Path, cfg: Config, groups: int = 8, src: str | None = None) -> list[list[int]]:
    """A map step's parts split into at most `groups` contiguous groups of part indices."""
    if step not in MAP_STEPS:
        raise DataprunerError(f"partition: {step!r} is not a map step; use one of {', '.join(MAP_STEPS)}")
    with session(run, cfg, f"partition {step}", src, progress=False) as ctx:
        if step == "write":
            run_step(ctx, "plan")
        count = len(get_step(step).parts(ctx))
    if not count:  # one task that does nothing: an empty mapped task would skip every task after it
        return [[]]
    size = -(-count // max(1, groups))
    return [list(range(lo, min(lo + size, count))) for lo in range(0, count, size)]
