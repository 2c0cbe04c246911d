"""The loop that runs the table: a step's finished parts skipped, stale ones swept, the rest claimed, run
(map steps through the runner) and marked.

A map step's function takes a few parts and yields each part once its files are in place; a barrier
step's function makes its one part. The loop never lets a step check or write its own completion marker:
it skips parts whose marker holds a token that covers the current one, removes what stale parts recorded
writing, runs the rest, and marks each part with its token, the files it wrote and, for barriers, a
digest the next steps' tokens include.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass
from typing import Iterator

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import Context, NotReady, Step
from datapruner.steps.table import STEP_NAMES, command_for_users, get_step

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------

def tokens(ctx: Context, step: Step, parts: list[str]) -> dict[str, str]:
    return {p: step.token(ctx, p) for p in parts}


def is_reusable(ctx: Context, step: Step, part: str, token: str) -> bool:
    record = ctx.run.read_marker(step.name, part)
    return record is not None and step.covers(record["token"], token)


def check_after(ctx: Context, step: Step) -> None:
    """Every part of the steps this one reads must be done. (Whether they are current is carried by the
    tokens: a step's token includes the digest its upstream recorded, and a changed upstream removes
    what it made stale.)"""
    for name in step.after:
        before = get_step(name)
        try:
            parts = before.parts(ctx)
        except NotReady:
            parts = ["?"]
        missing = [p for p in parts if ctx.run.read_marker(name, p) is None]
        if missing:
            raise DataprunerError(f"{step.name} needs {name} to be finished first ({len(missing)} part(s) to do): "
                                  f"run `datapruner {command_for_users(name)}` on {ctx.run.root}")


def sweep(ctx: Context, step: Step, only: list[str] | None = None) -> int:
    """Remove what stale parts of `step` recorded writing: parts that no longer exist, or whose marker's
    token does not cover the current one (every part, when the token cannot be known yet). With `only`
    (an orchestrator's task running some parts beside others), just those parts."""
    try:
        parts = step.parts(ctx)
        current = tokens(ctx, step, parts)
    except NotReady:
        current = {}
    marked = ctx.run.marked_parts(step.name)
    removed = 0
    for part in marked if only is None else [p for p in marked if p in set(only)]:
        if part not in current or not is_reusable(ctx, step, part, current[part]):
            removed += len(ctx.run.drop_part(step.name, part))
    return removed


def sweep_after(ctx: Context, name: str) -> dict:
    """After `name` changed something, remove every later step's stale outputs (RUN never contradicts
    its manifest). Returns {step: files removed} for the steps that lost any."""
    later = STEP_NAMES[STEP_NAMES.index(name) + 1:]
    removed = {s: sweep(ctx, get_step(s)) for s in later}
    return {s: n for s, n in removed.items() if n}


def finish_sweep(ctx: Context, name: str, changed: bool) -> dict:
    """The end of step `name`: after it changed something, or when a killed run of it left its sweep
    unfinished (its flag, RunDir.sweep_flag), every later step's stale outputs go, and only then the flag.
    Returns {step: files removed} for the steps that lost any."""
    if not (changed or ctx.run.sweep_pending(name)):
        return {}
    removed = sweep_after(ctx, name)
    ctx.run.end_sweep(name)
    if removed:
        log.info("%s changed: removed the outputs it made stale (%s)", name,
                 ", ".join(f"{s}: {n} file(s)" for s, n in removed.items()))
    return removed


def finish_earlier_sweeps(ctx: Context, step: Step) -> dict:
    """The unfinished sweeps of the steps this one reads (a command killed while removing what they made
    stale), finished before this step reads or marks anything."""
    removed: dict = {}
    for name in step.after:
        for later, n in finish_sweep(ctx, name, changed=False).items():
            removed[later] = removed.get(later, 0) + n
    return removed


def run_step(ctx: Context, name: str, runner=None, indices: list[int] | None = None) -> dict:
    """Run the parts of one step that are not done (only those at `indices`, when given); mark each as it
    finishes. Indices past a step's parts are ignored (a barrier has one part; a mapped task's group
    may be larger than the step it is used for). The sweep of what the step made stale is part of it."""
    step = get_step(name)
    started, cpu_started = time.perf_counter(), time.process_time()
    check_after(ctx, step)
    resumed = finish_earlier_sweeps(ctx, step) if indices is None else {}
    interrupted = indices is None and ctx.run.sweep_pending(name)  # a killed run of it left its sweep
    every = step.parts(ctx)
    wanted = every if indices is None else [every[i] for i in sorted(set(indices)) if 0 <= i < len(every)]
    sweep(ctx, step, None if indices is None else wanted)
    current = tokens(ctx, step, wanted)
    todo = [p for p in wanted if not is_reusable(ctx, step, p, current[p])]
    if todo:
        ctx.run.begin_sweep(name)  # until the sweep after it is done, the step is not over
    claim(ctx, step, todo)
    results = run_parts(ctx, step, todo, current, runner)
    summary = {"parts": len(wanted), "parts_reused": len(wanted) - len(todo), **_totals(results)}
    removed = _merged(resumed, finish_sweep(ctx, name, changed=bool(todo)))
    if removed:
        summary["removed_stale"] = removed
    if interrupted or resumed:
        summary["cleanup_resumed"] = True  # a killed command's sweep was finished by this one
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary.update(driver_usage(cpu_started))
    return summary


def driver_usage(cpu_started: float) -> dict:
    """What the step cost this process (the driver; a runner's workers and Ray tasks are not in it): its CPU
    seconds, and the process's peak RSS so far."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"driver_cpu_seconds": round(time.process_time() - cpu_started, 3),
            "driver_peak_rss_mib": round(peak_kib / 1024, 1)}


def run_parts(ctx: Context, step: Step, todo: list[str], current: dict[str, str], runner=None) -> list[dict]:
    """Run the parts to do: a barrier's here, each marked with its token, files and digest; a map step's
    through the runner, whose tasks mark each part."""
    if not todo:
        return []
    if step.kind == "barrier":
        results = []
        for part in todo:
            results.append(step.call(ctx, part) or {})
            digest = step.digest(ctx.run, part) if step.digest else None
            ctx.run.write_marker(step.name, part, current[part], step.outputs(ctx.run, part), digest)
        return results
    from datapruner.runners import get_runner

    task = PartTask(step.name, str(ctx.run.root), ctx.cfg, {p: current[p] for p in todo}, step.batch(ctx.cfg),
                    step.setup is not None, ctx.progress)
    return (runner or get_runner(ctx.cfg)).map(task, todo, step.name, ctx.progress)


def _merged(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}


def claim(ctx: Context, step: Step, parts: list[str]) -> None:
    """Record the files these parts will write before writing them; refuse to overwrite a file at one
    of those names that no step of ours recorded (the sweep removed what stale or interrupted attempts
    recorded, so anything still there is not ours)."""
    for part in parts:
        declared = step.outputs(ctx.run, part)
        foreign = [p for p in declared if p.exists()]
        if foreign:
            raise DataprunerError(f"{foreign[0]} is in the way of datapruner's {step.name} step and was not written "
                                  "by it: move it out of the run directory, or use another --out")
        ctx.run.write_intent(step.name, part, declared)


def _totals(results: list[dict]) -> dict:
    out: dict = {}
    for result in results:
        for key, value in result.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
            else:
                out[key] = value
    return out


@dataclass(frozen=True)
class PartTask:
    """One map step over some parts, as a runner sees it: picklable, and nothing step-specific.

    A runner calls `setup()` once per process (or Ray actor) and then `task(state, parts)` for each
    batch of parts, consuming the (part, result) pairs it yields; each part is marked as it is yielded.
    """

    step: str
    run_root: str
    cfg: Config
    part_tokens: dict
    batch: int = 1
    has_setup: bool = False
    progress: bool = False

    def context(self) -> Context:
        return Context(RunDir(self.run_root), self.cfg, progress=self.progress)

    def setup(self):
        step = get_step(self.step)
        return step.setup(self.context()) if step.setup else None

    def __call__(self, state, parts: list[str]) -> Iterator[tuple[str, dict]]:
        """Parts already marked with their token (a retried call's earlier attempt) are skipped."""
        step, ctx = get_step(self.step), self.context()
        todo = [p for p in parts if not is_reusable(ctx, step, p, self.part_tokens[p])]
        for part in parts:
            if part not in todo:
                yield part, {}
        if not todo:
            return
        for part, result in step.call(ctx, todo, state):
            ctx.run.write_marker(step.name, part, self.part_tokens[part], step.outputs(ctx.run, part))
            yield part, result
