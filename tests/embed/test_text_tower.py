"""The text tower runs only when a metric of the policy (or cfg.metrics, or embed_text) reads text."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import TINY
from shardmaker import write_shards

from datapruner import api
from datapruner.config import Config
from datapruner.errors import DataprunerError


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-shards")
    write_shards(root, n_shards=2, per_shard=12)
    return root


def _cfg(**kw) -> Config:
    return Config(**TINY, clusters=2, shard_size=8, **kw)


def _text_parts(run) -> list:
    return sorted(p.name for p in (run / "embeddings/text_emb").glob("*.npy")) if (run / "embeddings/text_emb").exists() else []


def test_a_policy_without_text_metrics_embeds_images_only(shards, tmp_path):
    run = tmp_path / "run"
    api.score(str(shards), run, 0.5, _cfg(metric="prototypicality"), progress=False)
    assert _text_parts(run) == []
    meta = pq.read_table(run / "embeddings/metadata/metadata_0.parquet")
    assert all(c.startswith("a ") for c in meta.column("caption").to_pylist())  # the captions are still kept
    assert (run / "manifest/keep.parquet").exists()


@pytest.mark.parametrize("kw", [dict(metric="clip_score"), dict(filters=({"name": "clip_score", "threshold": 0.0},)),
                                dict(metrics=("clip_score",)), dict(embed_text=True)])
def test_text_is_embedded_when_a_metric_reads_it_or_when_asked(shards, tmp_path, kw):
    run = tmp_path / "run"
    api.embed(str(shards), run, _cfg(**kw), progress=False)
    assert _text_parts(run) == ["text_emb_0.npy", "text_emb_1.npy"]
    assert np.load(run / "embeddings/text_emb/text_emb_0.npy").shape == (12, 64)


def test_clip_score_on_a_run_embedded_without_text_is_refused_until_re_embed(shards, tmp_path):
    run = tmp_path / "run"
    api.embed(str(shards), run, _cfg(), progress=False)
    with pytest.raises(DataprunerError, match="embedded without text embeddings.*--re-embed"):
        api.score(str(shards), run, 0.5, _cfg(metric="clip_score"), progress=False)
    api.cluster(run, _cfg())
    with pytest.raises(DataprunerError, match="text embeddings"):  # RUN only: the score step says it
        api.select(run, 0.5, _cfg(metric="clip_score"), progress=False)
    api.score(str(shards), run, 0.5, _cfg(metric="clip_score", re_embed=True), progress=False)
    assert _text_parts(run) == ["text_emb_0.npy", "text_emb_1.npy"]
    scores = pq.read_table(run / "scores/part-0.parquet").column("score_clip_score").to_numpy()
    assert len(scores) == 12 and np.all(np.abs(scores) <= 1.0001)


def test_a_run_with_text_serves_a_policy_without_it_as_it_is(shards, tmp_path):
    run = tmp_path / "run"
    api.embed(str(shards), run, _cfg(metric="clip_score"), progress=False)
    before = (run / "embeddings/text_emb/text_emb_0.npy").read_bytes()
    summary = api.score(str(shards), run, 0.5, _cfg(), progress=False)
    assert summary["embed"]["parts_reused"] == summary["embed"]["parts"] == 2  # nothing re-embedded
    assert (run / "embeddings/text_emb/text_emb_0.npy").read_bytes() == before


def test_a_run_recorded_before_the_choice_keeps_its_text(shards, tmp_path):
    from datapruner.io.rundir import RunDir

    run = tmp_path / "run"
    api.embed(str(shards), run, _cfg(embed_text=True), progress=False)
    rd = RunDir(run)
    embed = rd.read_run_json()["embed"]
    old = {k: v for k, v in embed["inputs"].items() if k != "text"}  # what a run of the last release holds
    rd.update_run_json(embed={**embed, "inputs": old})
    summary = api.embed(str(shards), run, _cfg(), progress=False)
    assert summary["embed"]["parts_reused"] == 2


def test_the_tokenizer_is_built_when_text_is_first_embedded():
    from datapruner.embed.model import load_clip

    clip = load_clip(TINY["model"], TINY["pretrained"], "cpu")
    assert "tokenizer" not in vars(clip)  # an images-only run never builds it
    tokens = clip.tokenizer(["a photo of a cat", "a dog"])
    assert tokens.shape[0] == 2 and "tokenizer" in vars(clip)
