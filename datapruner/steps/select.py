"""The select stage: the manifest of what is kept and why (barrier)."""

from __future__ import annotations

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import Context, Step, digest_files, one_part, token_of
from datapruner.steps.metrics import metric_token


def policy_inputs(cfg: Config) -> tuple:
    from datapruner.metrics.scoring import policy_metrics

    options = {m: cfg.options_for(m) for m in policy_metrics(cfg)}
    return cfg.keep, cfg.metric, cfg.order, cfg.budget, list(cfg.filters), options, cfg.seed


def manifest_token(ctx: Context, part: str) -> str:
    """The policy and the tokens of the metrics it reads (not of extra columns the scores may hold)."""
    from datapruner.metrics.scoring import policy_metrics

    metrics = {m: metric_token(ctx, m) for m in policy_metrics(ctx.cfg)}
    return token_of(*policy_inputs(ctx.cfg), metrics)


def manifest_outputs(run: RunDir, part: str) -> list:
    from datapruner.select.manifest import outputs

    return outputs(run)


def run_select(ctx: Context, part: str) -> dict:
    from datapruner.select.manifest import build_manifest

    return build_manifest(ctx.run, ctx.cfg.keep, ctx.cfg)


STEPS = [
    Step("select", "barrier", "select", one_part("manifest"), manifest_token, manifest_outputs, run_select,
         after=("measure",), digest=lambda rd, part: digest_files([rd.keep_parquet]), inputs=policy_inputs),
]
