"""The step table: every step of the pipeline, declared once, and the one loop that runs them.

    step      kind     parts                   its outputs depend on (the token)             writes
    index     map      precomputed parts (a)   the embed inputs (the layout, its files)       join/index/
    scan      map      input shards (a)        the embed inputs                               join/samples/
    join      map      hash buckets (a)        the embed inputs                               join/matches/
    embed     map      input shards            model, weights, precision, seed*, fields, src  embeddings/, errors/
    cluster   barrier  centroids               embed, k, sample, iterations, seed             clusters/centroids.npy
    assign    map      input shards            the centroids                                  clusters/assign/
    fit       barrier  the fitted metrics      assign, the metric's options, seed             metrics/<name>/
    score     map      input shards            every metric's token                           scores/
    select    barrier  manifest                the policy and its metrics' tokens             manifest/
    plan      barrier  plan                    the manifest, shard size, output names         write_plan.parquet, shards/sizes.json
    write     map      output shards           the plan                                       shards/
    report    barrier  report                  the manifest, the written shards               report/index.html

A map step's function takes a few parts and yields each part once its files are in place; a barrier
step's function makes its one part. The loop (`run_step`) never lets a step check or write its own
completion marker: it skips parts whose marker holds a token that covers the current one, removes
what stale parts recorded writing, runs the rest (map steps through the runner), and marks each part
with its token, the files it wrote and, for barriers, a digest the next steps' tokens include.
(* the seed only when the weights are a random init. (a) only with --embeddings DIR, else no parts:
the external hash join of embed/join.py, after which embed writes the run's own parts from the matches.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a step sees: the run directory, the resolved config, and memoised tokens (driver side)."""

    run: RunDir
    cfg: Config
    progress: bool = True
    memo: dict = field(default_factory=dict)


class NotReady(Exception):
    """A step's token cannot be known yet: an earlier step has not finished."""


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # "map" | "barrier"
    parts: Callable[[Context], list[str]]
    token: Callable[[Context, str], str]
    outputs: Callable[[RunDir, str], list[Path]]
    run: Callable  # map: (ctx, parts, state) -> Iterator[(part, dict)]; barrier: (ctx, part) -> dict
    after: tuple[str, ...] = ()  # steps whose every part must be done first
    setup: Callable[[Context], Any] | None = None  # per process (a Ray actor, a local worker): e.g. the model
    batch: Callable[[Config], int] = lambda cfg: 1  # parts per call on a distributed runner
    covers: Callable[[str, str], bool] = lambda marked, wanted: marked == wanted
    digest: Callable[[RunDir, str], str] | None = None  # barriers: what later tokens include (default: the token)


def digest_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        if path.exists():
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def token_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def barrier_digest(ctx: Context, name: str, part: str) -> str:
    """The digest recorded by a finished barrier part; NotReady when it is not done."""
    record = ctx.run.read_marker(name, part)
    if record is None:
        raise NotReady(f"{name} has not run")
    return record.get("digest") or record["token"]


def _table() -> dict[str, Step]:
    from datapruner.cluster import assign, kmeans
    from datapruner.embed import inputs as embed_inputs
    from datapruner.embed import join
    from datapruner.embed import step as embed
    from datapruner.metrics import step as metrics
    from datapruner.report import html as report
    from datapruner.select import manifest
    from datapruner.write import shards as write

    steps = [
        # with --embeddings DIR only (no parts otherwise): its rows joined to the shards' samples
        Step("index", "map", join.index_parts, embed_inputs.token, join.index_outputs, join.index),
        Step("scan", "map", join.scan_parts, embed_inputs.token, join.scan_outputs, join.scan),
        Step("join", "map", join.join_parts, embed_inputs.token, join.join_outputs, join.join,
             after=("index", "scan")),
        Step("embed", "map", embed.parts, embed_inputs.token, embed.outputs, embed.run,
             after=("join",), setup=embed.setup, batch=embed.batch),
        Step("cluster", "barrier", lambda ctx: ["centroids"], kmeans.token, kmeans.outputs, kmeans.run,
             after=("embed",), digest=lambda rd, part: digest_files([rd.centroids])),
        Step("assign", "map", embed.parts, assign.token, assign.outputs, assign.run, after=("cluster",)),
        Step("fit", "barrier", metrics.fitted_needed, metrics.fit_token, metrics.fit_outputs, metrics.fit,
             after=("assign",)),
        Step("score", "map", embed.parts, metrics.score_token, metrics.score_outputs, metrics.score,
             after=("fit",), covers=metrics.covers),
        Step("select", "barrier", lambda ctx: ["manifest"], manifest.token, manifest.outputs, manifest.run,
             after=("score",), digest=lambda rd, part: digest_files([rd.keep_parquet])),
        Step("plan", "barrier", lambda ctx: ["plan"], write.plan_token, write.plan_outputs, write.plan,
             after=("select",)),
        Step("write", "map", write.parts, write.token, write.outputs, write.run, after=("plan",)),
        Step("report", "barrier", lambda ctx: ["report"], report.token, report.outputs, report.run,
             after=("select",)),
    ]
    return {s.name: s for s in steps}


_STEPS: dict[str, Step] = {}


def steps() -> dict[str, Step]:
    """The table, in pipeline order (built on first use, so importing this module stays light)."""
    if not _STEPS:
        _STEPS.update(_table())
    return _STEPS


STEP_NAMES = ("index", "scan", "join", "embed", "cluster", "assign", "fit", "score", "select", "plan", "write",
              "report")
# the map steps an orchestrator fans out (index, scan and join are map steps too, with parts only when
# --embeddings is given; they run as one task each)
MAP_STEPS = ("embed", "assign", "score", "write")


def get_step(name: str) -> Step:
    if name not in STEP_NAMES:
        raise DataprunerError(f"unknown step {name!r}; the steps are {', '.join(STEP_NAMES)}")
    return steps()[name]


# the loop --------------------------------------------------------------------------------------------

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
                                  f"run `datapruner {name_for_users(name)}` on {ctx.run.root}")


def name_for_users(step: str) -> str:
    """The CLI command that runs a step."""
    return {"assign": "select", "fit": "select", "score": "select", "plan": "write", "index": "embed",
            "scan": "embed", "join": "embed"}.get(step, step)


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


def run_step(ctx: Context, name: str, runner=None, indices: list[int] | None = None) -> dict:
    """Run the parts of one step that are not done (only those at `indices`, when given); mark each as it
    finishes. Indices past a step's parts are ignored (a barrier has one part; a mapped task's group
    may be larger than the step it is used for)."""
    step = get_step(name)
    started = time.perf_counter()
    check_after(ctx, step)
    every = step.parts(ctx)
    wanted = every if indices is None else [every[i] for i in sorted(set(indices)) if 0 <= i < len(every)]
    sweep(ctx, step, None if indices is None else wanted)
    current = tokens(ctx, step, wanted)
    todo = [p for p in wanted if not is_reusable(ctx, step, p, current[p])]
    claim(ctx, step, todo)
    results: list[dict] = []
    if todo and step.kind == "barrier":
        for part in todo:
            results.append(step.run(ctx, part) or {})
            outputs = step.outputs(ctx.run, part)
            digest = step.digest(ctx.run, part) if step.digest else None
            ctx.run.write_marker(step.name, part, current[part], outputs, digest)
    elif todo:
        from datapruner.runners import get_runner

        task = PartTask(name, str(ctx.run.root), ctx.cfg, {p: current[p] for p in todo}, step.batch(ctx.cfg),
                        step.setup is not None, ctx.progress)
        results = (runner or get_runner(ctx.cfg)).map(task, todo, name, ctx.progress)
    summary = {"parts": len(wanted), "parts_reused": len(wanted) - len(todo), **_totals(results)}
    if todo:
        removed = sweep_after(ctx, name)
        if removed:
            summary["removed_stale"] = removed
            log.info("%s changed: removed the outputs it made stale (%s)", name,
                     ", ".join(f"{s}: {n} file(s)" for s, n in removed.items()))
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary


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
        for part, result in step.run(ctx, todo, state):
            ctx.run.write_marker(step.name, part, self.part_tokens[part], step.outputs(ctx.run, part))
            yield part, result


# commands: what each front-end command (CLI, API function, Airflow task) runs, in order
COMMANDS: dict[str, tuple[str, ...]] = {
    "embed": ("index", "scan", "join", "embed"),
    "cluster": ("cluster",),
    "score": ("assign", "fit", "score"),
    "select": ("assign", "fit", "score", "select", "report"),
    "write": ("plan", "write", "report"),
    "report": ("report",),
    "prune": STEP_NAMES,
}
