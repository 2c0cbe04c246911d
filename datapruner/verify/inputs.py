"""Gathering what the verify study needs from a run: its labelled rows, embeddings, student inputs, test set."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.verify.data import Split, embedding_split, embeddings_root, image_split, labels_of

log = logging.getLogger(__name__)
IMAGE_STUDENTS = ("cnn",)


def run_rows(run: str | Path, group: str | None = None) -> tuple[pa.Table, np.ndarray]:
    """(shard, key, label [, group] of every embedded sample in part order, their float32 embeddings)."""
    from datapruner.embed.outputs import read_img_emb, read_metadata

    rd = RunDir(run)
    parts = list(zip(rd.part_ids(), rd.shards()))
    if not parts:
        raise DataprunerError(f"{run} has no embeddings: run `datapruner embed` first (or pass --src)")
    columns = ["shard", "key", "label", *([group] if group else [])]
    metas = [read_metadata(rd, p, s) for p, s in parts]
    if group and any(group not in m.column_names for m in metas):
        raise DataprunerError(f"--holdout-group {group!r}: the run's metadata has no such column (a json field "
                              "of the samples, e.g. a source or video id)")
    table = pa.concat_tables([m.select([c for c in columns if c in m.column_names]) for m in metas],
                             promote_options="default")
    labels_of(table, str(run))
    x = np.concatenate([np.asarray(read_img_emb(rd, p), np.float32) for p, _ in parts])
    return table, x


def student_inputs(run: str | Path, table: pa.Table, emb: np.ndarray, student: str, image_size: int,
                   channels: int, allow_pipe: bool = False) -> np.ndarray:
    """The students' inputs for the rows of `table`: the embeddings, or the images decoded from the shards
    (a pipe: shard only with this command's --allow-pipe, whatever the run recorded)."""
    if student in IMAGE_STUDENTS:
        from datapruner.io.shards import refuse_pipe

        refuse_pipe(RunDir(run).shards(), allow_pipe, str(RunDir(run).run_json))
        return image_split(RunDir(run).shards(), image_size, channels, table).x
    return emb


def test_split(test_src: str, run: str | Path, cfg, student: str, image_size: int, channels: int) -> Split:
    """A held-out test set from `test_src`: shards, a run dir, or a precomputed embeddings dir."""
    from datapruner.io.shards import list_shards

    if student in IMAGE_STUDENTS:
        return image_split(list_shards(test_src, allow_pipe=cfg.allow_pipe), image_size, channels)
    try:
        return embedding_split(embeddings_root(test_src))
    except FileNotFoundError:
        pass
    from datapruner.session import run_command

    test_run = RunDir(run).verify_test_run
    log.info("verify: embedding the test shards %s into %s with the run's model", test_src, test_run)
    run_command("embed", test_run, with_run_embed_inputs(run, cfg), test_src, progress=False)
    return embedding_split(RunDir(test_run).own_embeddings)


# what the embeddings depend on (steps/embed_inputs.embed_inputs): the test set must be embedded like the run
RUN_EMBED_FIELDS = ("model", "pretrained", "precision", "seed", "caption_field", "label_field", "max_image_pixels",
                    "max_full_decode_pixels", "allow_unsafe_names")


def with_run_embed_inputs(run: str | Path, cfg):
    """`cfg` with the run's recorded embed inputs: the test features live in the training features' space
    (a different seed of a random init is a different space). A cached test run embedded otherwise is
    replaced (re_embed), never reused."""
    recorded = RunDir(run).read_run_json().get("config", {})
    return cfg.replace(**{f: recorded[f] for f in RUN_EMBED_FIELDS if f in recorded}, embeddings=None, re_embed=True)
