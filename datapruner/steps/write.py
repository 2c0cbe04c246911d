"""The write stage: the plan of output shards (barrier), then each pruned shard copied (map)."""

from __future__ import annotations

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import RUNNING, Context, NotReady, Step, barrier_digest, one_part, token_of


def plan_inputs(cfg: Config) -> tuple:
    return cfg.shard_size, cfg.output_prefix, cfg.output_digits


def plan_token(ctx: Context, part: str) -> str:
    from datapruner.write.shards import PLAN_LAYOUT

    return token_of(barrier_digest(ctx, "select", "manifest"), *plan_inputs(ctx.cfg), PLAN_LAYOUT)


def plan_outputs(run: RunDir, part: str) -> list:
    from datapruner.write.shards import plan_outputs as outputs

    return outputs(run)


def run_plan(ctx: Context, part: str) -> dict:
    from datapruner.write.shards import build_plan

    cfg = ctx.cfg
    return build_plan(ctx.run, cfg.shard_size, cfg.output_prefix, cfg.output_digits, cfg.allow_pipe,
                      cfg.allow_unsafe_names)


def output_shards(ctx: Context) -> list[str]:
    """One part per output shard, {name}.

    Its row group index in the plan is its place in this list."""
    from datapruner.write.shards import plan_names

    path = ctx.run.write_plan
    if ctx.run.read_marker("plan", "plan") is None or not path.exists():
        raise NotReady("no write plan")
    return plan_names(path)


def write_inputs(cfg: Config) -> tuple:
    return (cfg.with_embeddings,)


def write_token(ctx: Context, part: str) -> str:
    plan = barrier_digest(ctx, "plan", "plan")
    # shards without embeddings keep the token they always had: a finished write is not redone
    return token_of(plan, *write_inputs(ctx.cfg)) if ctx.cfg.with_embeddings else plan


def shard_outputs(run: RunDir, part: str) -> list:
    from datapruner.write.shards import outputs

    return outputs(run, part)


def run_write(ctx: Context, parts: list[str], state=None):
    from datapruner.write.shards import write_shards

    yield from write_shards(ctx.run, parts, ctx.cfg.allow_pipe, ctx.cfg.with_embeddings)


# where the sources may be read from, not what is read: a refused source fails, it does not change a byte
SOURCES = {"allow_pipe": "whether pipe: sources may be read (refused, not changed, without it)",
           "allow_unsafe_names": "decided at embed, whose token holds it; the plan re-reads only kept samples"}

STEPS = [
    Step("plan", "barrier", "write", one_part("plan"), plan_token, plan_outputs, run_plan, after=("select",),
         inputs=plan_inputs, untokened=SOURCES),
    Step("write", "map", "write", output_shards, write_token, shard_outputs, run_write, after=("plan",),
         inputs=write_inputs, untokened={**RUNNING, **SOURCES}),
]
