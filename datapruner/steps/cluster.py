"""The cluster stage: k-means centroids on a sample (barrier), then every part assigned to them (map)."""

from __future__ import annotations

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import (RUNNING, Context, Step, barrier_digest, digest_files, input_shards, one_part,
                                       token_of)
from datapruner.steps.embed_inputs import token as embed_token


def kmeans_inputs(cfg: Config) -> tuple:
    return cfg.clusters, cfg.kmeans_sample, cfg.kmeans_iters, cfg.seed


def centroids_token(ctx: Context, part: str) -> str:
    """What the centroids depend on: the embeddings and the k-means settings."""
    return token_of(embed_token(ctx), *kmeans_inputs(ctx.cfg))


def fit_centroids(ctx: Context, part: str) -> dict:
    from datapruner.cluster.kmeans import fit_run_centroids

    return fit_run_centroids(ctx.run, ctx.cfg)


def assign_token(ctx: Context, part: str) -> str:
    return barrier_digest(ctx, "cluster", "centroids")


def assign_outputs(run: RunDir, part: str) -> list:
    return [run.assigned_cluster(part), run.assigned_dist(part), run.assigned_by_cluster(part)]


def run_assign(ctx: Context, parts: list[str], state=None):
    from datapruner.cluster.assign import assign_parts

    yield from assign_parts(ctx.run, parts, ctx.cfg.device)


STEPS = [
    Step("cluster", "barrier", "cluster", one_part("centroids"), centroids_token, lambda rd, part: [rd.centroids],
         fit_centroids, after=("embed",), digest=lambda rd, part: digest_files([rd.centroids]), inputs=kmeans_inputs,
         untokened=RUNNING),
    Step("assign", "map", "select", input_shards, assign_token, assign_outputs, run_assign,
         after=("cluster",), also_in=("measure",), untokened=RUNNING),
]
