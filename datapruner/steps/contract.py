"""The vocabulary of the step table: a Step, the Context a step sees, and the tokens of its inputs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from datapruner.config import Config
from datapruner.io.rundir import RunDir


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
    """One step of the pipeline. `call` is the call into its room: for a map step (ctx, parts, state) ->
    Iterator[(part, result)], yielding each part once its files are in place; for a barrier (ctx, part)
    -> result. `inputs` gives the config values its token hashes (beside the digests of the steps
before it); `untokened` names the config fields the step reads that its token deliberately leaves out,
    with the reason (they change how the work runs, not what it writes)."""

    name: str
    kind: str  # "map" | "barrier"
    command: str  # the CLI command a user runs for it
    parts: Callable[[Context], list[str]]
    token: Callable[[Context, str], str]
    outputs: Callable[[RunDir, str], list[Path]]
    call: Callable
    after: tuple[str, ...] = ()  # steps whose every part must be done first
    setup: Callable[[Context], Any] | None = None  # per process (a Ray actor, a local worker): e.g. the model
    batch: Callable[[Config], int] = lambda cfg: 1  # parts per call on a distributed runner
    covers: Callable[[str, str], bool] = lambda marked, wanted: marked == wanted
    digest: Callable[[RunDir, str], str] | None = None  # barriers: what later tokens include (default: the token)
    also_in: tuple[str, ...] = ()  # other commands that run it (every step is in `score`, end to end)
    inputs: Callable[[Config], tuple] = lambda cfg: ()  # the config values its token hashes
    untokened: dict[str, str] = field(default_factory=dict)


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


def input_shards(ctx: Context) -> list[str]:
    """One part per input shard, {i}."""
    return ctx.run.part_ids()


def one_part(name: str) -> Callable[[Context], list[str]]:
    """The parts of a barrier with a single part."""
    def parts(ctx: Context) -> list[str]:
        return [name]
    parts.__doc__ = f"One part, {{{name}}}."
    return parts


# how the work runs, not what it writes: fields most map steps read without their token
RUNNING = {"runner": "where the parts run", "workers": "how many local processes",
           "ray_address": "which cluster", "ray_num_cpus_per_task": "a task's CPUs",
           "ray_runtime_env": "the workers' environment", "device": "where the arrays are computed (exact on each)"}
