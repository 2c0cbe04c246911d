"""The metrics stage: fit the metrics that need a state (barrier, one part per metric), SemDeDup's scores by
ranges of clusters (map), then measure every part's scores (map, writing scores/).

A metric's token hashes the centroids' digest, its name, the options its state depends on and the seed;
the measure step's token lists the token of every metric it scores ("name=token;…"), so a part scored
with more metrics than asked for still covers the request (verify scores extra columns).
"""

from __future__ import annotations

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import RUNNING, Context, Step, barrier_digest, input_shards, token_of


def metric_token(ctx: Context, name: str) -> str:
    from datapruner.metrics.registry import get_metric

    options = get_metric(name).token_options(ctx.cfg)
    return token_of(barrier_digest(ctx, "cluster", "centroids"), name, options, ctx.cfg.seed)


def metric_inputs(cfg: Config) -> tuple:
    """The config values the metric tokens hash: the policy's metrics, their token options and the seed."""
    from datapruner.metrics.registry import get_metric
    from datapruner.metrics.scoring import metrics_needed

    return tuple((m, get_metric(m).token_options(cfg)) for m in metrics_needed(cfg)) + (cfg.seed,)


def fitted_parts(ctx: Context) -> list[str]:
    """One part per metric of the policy that fits a state, {metric}."""
    from datapruner.metrics.scoring import fitted_needed

    return fitted_needed(ctx.cfg)


def run_fit(ctx: Context, name: str) -> dict:
    from datapruner.metrics.scoring import fit_metric

    return fit_metric(ctx.run, name, ctx.cfg)


def dedup_parts(ctx: Context) -> list[str]:
    """One part per range of cluster ids, {range} = lo-hi (about max_rows rows), when the policy reads semdedup."""
    from datapruner.metrics.registry import get_metric
    from datapruner.metrics.scoring import metrics_needed
    from datapruner.metrics.semdedup import groups

    if "semdedup" not in metrics_needed(ctx.cfg):
        return []
    barrier_digest(ctx, "cluster", "centroids")  # NotReady until the centroids exist
    return groups(ctx.run, int(get_metric("semdedup").options(ctx.cfg)["max_rows"]))


def dedup_inputs(cfg: Config) -> tuple:
    """Whether the policy reads semdedup (else the step has no parts), its options and the seed."""
    from datapruner.metrics.registry import get_metric
    from datapruner.metrics.scoring import metrics_needed

    return "semdedup" in metrics_needed(cfg), get_metric("semdedup").options(cfg), cfg.seed


def run_dedup(ctx: Context, parts: list[str], state=None):
    from datapruner.metrics.registry import get_metric
    from datapruner.metrics.semdedup import score_group

    options = get_metric("semdedup").options(ctx.cfg)
    for part in parts:
        yield part, {"rows": score_group(ctx.run, part, options, ctx.cfg.device)}


def dedup_outputs(run: RunDir, part: str) -> list:
    from datapruner.metrics.semdedup import group_path

    return [group_path(run, part)]


def measure_token(ctx: Context, part: str) -> str:
    from datapruner.metrics.scoring import metrics_needed

    key = ("measure_token", barrier_digest(ctx, "cluster", "centroids"))  # the same for every part
    if key not in ctx.memo:
        ctx.memo[key] = ";".join(f"{m}={metric_token(ctx, m)}" for m in metrics_needed(ctx.cfg))
    return ctx.memo[key]


def covers(marked: str, wanted: str) -> bool:
    """A part scored with these metrics (and maybe more) at the same tokens serves the request."""
    return set(wanted.split(";")) <= set(marked.split(";"))


def run_measure(ctx: Context, parts: list[str], state=None):
    from datapruner.metrics.scoring import score_part

    for part in parts:
        yield part, {"rows": score_part(ctx.run, part, ctx.cfg)}


STEPS = [
    Step("fit", "barrier", "select", fitted_parts, metric_token, lambda rd, name: [rd.metric_dir(name)], run_fit,
         after=("assign",), also_in=("measure",), inputs=metric_inputs, untokened=RUNNING),
    Step("dedup", "map", "select", dedup_parts, lambda ctx, part: metric_token(ctx, "semdedup"), dedup_outputs,
         run_dedup, after=("assign",), also_in=("measure",), inputs=dedup_inputs, untokened=RUNNING),
    Step("measure", "map", "select", input_shards, measure_token,
         lambda rd, part: [rd.scores(part)], run_measure, after=("fit", "dedup"), covers=covers,
         also_in=("measure",),
         inputs=metric_inputs, untokened=RUNNING),
]
