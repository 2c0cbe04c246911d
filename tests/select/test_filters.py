"""Filter chains in the policy: semdedup by ε and by fraction, reasons per stage, the --filter syntax."""

import numpy as np
import pyarrow as pa
import pytest

from datapruner.config import Config
from datapruner.select.filters import parse_filter
from datapruner.select.policy import select_table


def table():
    dup = [-1.0, 0.99, 0.5, -1.0, 0.97, 0.999, 0.2, 0.3]
    clip = [0.3, 0.3, 0.01, 0.3, 0.3, 0.3, 0.3, 0.02]
    n = len(dup)
    return pa.table({"shard": ["s"] * n, "key": [f"{i}" for i in range(n)], "cluster": np.zeros(n, np.int32),
                     "dist_to_centroid": np.linspace(0, 1, n).astype(np.float32),
                     "score_prototypicality": np.linspace(0, 1, n).astype(np.float32),
                     "score_random": np.zeros(n, np.float32), "score_semdedup": np.array(dup, np.float32),
                     "score_clip_score": np.array(clip, np.float32)})


def reasons(cfg, keep=0.25):
    return select_table(table(), keep, cfg).column("reason").to_pylist()


def test_semdedup_by_eps_removes_similarities_above_one_minus_eps():
    got = reasons(Config(filters=({"name": "semdedup", "eps": 0.02},)))
    assert [i for i, r in enumerate(got) if r == "removed by filter semdedup"] == [1, 5]


def test_semdedup_by_fraction_removes_the_most_similar_share_exactly():
    got = reasons(Config(filters=({"name": "semdedup", "fraction": 0.375},)))
    assert [i for i, r in enumerate(got) if r == "removed by filter semdedup"] == [1, 4, 5]


def test_each_removed_sample_names_the_stage_that_removed_it():
    cfg = Config(filters=({"name": "semdedup", "eps": 0.02}, {"name": "clip_score", "threshold": 0.1}))
    got = reasons(cfg)
    assert got.count("removed by filter semdedup") == 2 and got.count("removed by filter clip_score") == 2
    assert got.count("kept") == 2 and got.count("below the global budget") == 2


def test_parse_filter():
    assert parse_filter("semdedup:eps=0.05") == {"name": "semdedup", "eps": 0.05}
    assert parse_filter("clip_score:fraction=0.1") == {"name": "clip_score", "fraction": 0.1}
    with pytest.raises(ValueError):
        parse_filter("semdedup:eps")
