"""Gathering what the verify study needs from a run: scores for every method, train and test splits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from datapruner.io.rundir import RunDir
from datapruner.metrics.step import metrics_needed
from datapruner.verify.data import Split, embedding_split, embeddings_root, image_split, run_embedding_split
from datapruner.verify.subsets import metrics_of

log = logging.getLogger(__name__)
IMAGE_STUDENTS = ("cnn",)


def scores_with_metrics(run: str | Path, cfg, metrics: list[str]) -> pa.Table:
    """The run's scores table with a score_<m> column for every metric in `metrics`.

    The run's own score command does it (clustering first if the run has no centroids): parts already
    scored with these metrics are reused, and scores/ then holds the extra columns beside the policy's.
    """
    from datapruner import api

    if RunDir(run).read_marker("cluster", "centroids") is None:
        api.cluster(run, cfg)
    scoring = cfg.replace(metrics=tuple(dict.fromkeys([*cfg.metrics, *metrics])))
    log.info("verify: scores with metrics %s", ", ".join(metrics_needed(scoring)))
    api.score(run, scoring, progress=False)
    return api.load_scores(run)


def metrics_for(methods) -> list[str]:
    return list(dict.fromkeys(name for m in methods for name in metrics_of(m)))


def train_split(run: str | Path, table: pa.Table, student: str, image_size: int, channels: int) -> Split:
    rd = RunDir(run)
    if student in IMAGE_STUDENTS:
        return image_split(rd.shards(), image_size, channels, table)
    return run_embedding_split(rd, table)


def test_split(test_src: str, run: str | Path, cfg, student: str, image_size: int, channels: int) -> Split:
    """A held-out test set from `test_src`: shards, a run dir, or a precomputed embeddings dir."""
    from datapruner.io.shards import list_shards

    if student in IMAGE_STUDENTS:
        return image_split(list_shards(test_src, allow_pipe=cfg.allow_pipe), image_size, channels)
    try:
        return embedding_split(embeddings_root(test_src))
    except FileNotFoundError:
        pass
    from datapruner import api

    test_run = RunDir(run).verify_test_run
    log.info("verify: embedding the test shards %s into %s with the run's model", test_src, test_run)
    api.embed(test_src, test_run, with_run_embed_inputs(run, cfg), progress=False)
    return embedding_split(RunDir(test_run).own_embeddings)


# what the embeddings depend on (embed/inputs.embed_inputs): the test set must be embedded like the run
RUN_EMBED_FIELDS = ("model", "pretrained", "precision", "seed", "caption_field", "label_field", "max_image_pixels",
                    "allow_unsafe_names")


def with_run_embed_inputs(run: str | Path, cfg):
    """`cfg` with the run's recorded embed inputs: the test features live in the training features' space
    (a different seed of a random init is a different space). A cached test run embedded otherwise is
    replaced (re_embed), never reused."""
    recorded = RunDir(run).read_run_json().get("config", {})
    return cfg.replace(**{f: recorded[f] for f in RUN_EMBED_FIELDS if f in recorded}, embeddings=None, re_embed=True)


def holdout_split(table: pa.Table, fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """(train rows, test rows) of the scores table: a stratified hold-out by label."""
    from datapruner.verify.data import labels_of, stratified_holdout

    mask = stratified_holdout(labels_of(table, "the run's scores"), fraction, seed)
    return table.filter(pa.array(~mask)), table.filter(pa.array(mask))


def kept_indices(table: pa.Table, methods, fractions, seeds, cfg, balance: str) -> dict:
    """{(method, fraction, seed): sorted row indices of `table` the method keeps}."""
    from datapruner.verify.subsets import kept_mask

    out = {}
    for method in methods:
        for fraction in fractions:
            for seed in seeds:
                out[(method, fraction, seed)] = np.flatnonzero(kept_mask(table, method, fraction, cfg, seed, balance))
    return out
