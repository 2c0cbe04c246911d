"""Method subsets come from datapruner's own selection on scores verify computes per pool and seed."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from datapruner.config import Config
from datapruner.embed.outputs import unit_rows
from datapruner.metrics.random import hashed_uniform
from datapruner.select.policy import select_table
from datapruner.verify.scoring import PoolData, pool_scores
from datapruner.verify.subsets import kept_mask, label_distance, method_config


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    emb = unit_rows(rng.normal(size=(200, 8)) + 3 * np.eye(8)[labels])
    ids = pa.table({"shard": [f"/data/{i % 3:05d}.tar" for i in range(200)], "key": [f"{i:06d}" for i in range(200)],
                    "label": pa.array(labels, pa.int64())})
    return PoolData(ids, emb, torch.from_numpy(emb), torch.from_numpy(labels))


def scores(pool, seed=0):
    el2n = lambda x, y, s: np.random.default_rng(s).random(len(y)).astype(np.float32)  # noqa: E731
    return pool_scores(pool, {"random", "prototypicality", "dbp", "el2n_student", "el2n_probe"}, Config(clusters=4), seed, el2n)


def test_methods_prune_exactly_as_select_does(pool):
    table, cfg = scores(pool), Config(clusters=4)
    for method in ("proto_hard", "proto_easy", "dbp", "el2n_probe"):
        mask = kept_mask(table, method, 0.3, cfg, seed=0)
        expected = select_table(table, 0.3, method_config(cfg, method, 0, 0.3)).column("kept").to_numpy(zero_copy_only=False)
        assert mask.sum() == 60 and np.array_equal(mask, expected)
    hard, easy = kept_mask(table, "proto_hard", 0.3, cfg, 0), kept_mask(table, "proto_easy", 0.3, cfg, 0)
    d = table.column("score_prototypicality").to_numpy()
    assert d[hard].mean() > d[easy].mean()
    assert kept_mask(table, "proto_hard", 1.0, cfg, 0).all()


def test_el2n_offset_drops_the_hardest_tenth_first(pool):
    table, cfg = scores(pool), Config(clusters=4)
    el2n = table.column("score_el2n_student").to_numpy()
    kept = kept_mask(table, "el2n_offset", 0.3, cfg, 0)
    ranked = np.argsort(-el2n)
    assert kept.sum() == 60 and not kept[ranked[:20]].any() and kept[ranked[20:80]].all()


def test_scores_follow_the_seed_and_random_is_the_pipelines_hash(pool):
    a, b = scores(pool, 0), scores(pool, 1)
    keys, shards = a.column("key").to_pylist(), a.column("shard").to_pylist()
    assert np.allclose(a.column("score_random").to_numpy(), hashed_uniform(0, shards, keys))
    assert not np.array_equal(a.column("score_random").to_numpy(), b.column("score_random").to_numpy())
    assert not np.array_equal(a.column("score_el2n_probe").to_numpy(), b.column("score_el2n_probe").to_numpy())


def test_class_balance_keeps_every_class_and_label_distance(pool):
    table = scores(pool)
    labels = table.column("label").to_numpy()
    mask = kept_mask(table, "proto_hard", 0.1, Config(clusters=4), 0, balance="class")
    tv, present = label_distance(labels[mask], labels)
    assert present == 4 and tv == pytest.approx(0.0)
    assert label_distance(labels[labels == 0], labels) == (pytest.approx(0.75), 1)
    with pytest.raises(ValueError):
        kept_mask(table, "proto_hard", 0.1, Config(), 0, balance="cluster-ish")
