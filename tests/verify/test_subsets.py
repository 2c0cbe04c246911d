"""Method subsets come from datapruner's own selection, exactly sized, reseeded for random, class-balanced on demand."""

import numpy as np
import pytest

from datapruner import api
from datapruner.config import Config
from datapruner.select.policy import select_table
from datapruner.verify.data import stratified_holdout
from datapruner.verify.subsets import class_shares, kept_mask, method_config, reseeded_random


@pytest.fixture(scope="module")
def scores(scored_run):
    return api.load_scores(scored_run)


def test_methods_prune_exactly_as_select_does(scores):
    cfg = Config()
    for method in ("proto_hard", "proto_easy"):
        mask = kept_mask(scores, method, 0.3, cfg, seed=0)
        expected = select_table(scores, 0.3, method_config(cfg, method, 0)).column("kept").to_numpy(zero_copy_only=False)
        assert mask.sum() == round(0.3 * scores.num_rows) and np.array_equal(mask, expected)
    hard, easy = kept_mask(scores, "proto_hard", 0.3, cfg, 0), kept_mask(scores, "proto_easy", 0.3, cfg, 0)
    d = scores.column("dist_to_centroid").to_numpy()
    assert d[hard].mean() > d[easy].mean()


def test_random_subsets_change_with_the_seed_and_match_the_random_metric(scores):
    a, b = kept_mask(scores, "random", 0.5, Config(), 0), kept_mask(scores, "random", 0.5, Config(), 1)
    assert a.sum() == b.sum() and not np.array_equal(a, b)
    assert np.array_equal(a, kept_mask(scores, "random", 0.5, Config(), 0))
    # seed 0 is what the run's own random metric (scored with seed 0) wrote
    assert np.allclose(reseeded_random(scores, 0).column("score_random").to_numpy(), scores.column("score_random").to_numpy())


def test_class_balance_keeps_every_class(scores):
    labels = scores.column("label").to_numpy()
    mask = kept_mask(scores, "proto_hard", 0.1, Config(), 0, balance="class")
    share, present = class_shares(labels[mask], np.unique(labels))
    assert present == len(np.unique(labels)) and share > 0
    with pytest.raises(ValueError):
        kept_mask(scores, "proto_hard", 0.1, Config(), 0, balance="cluster-ish")


def test_stratified_holdout():
    labels = np.repeat(np.arange(4), 10)
    mask = stratified_holdout(labels, 0.2, seed=0)
    assert all(mask[labels == c].sum() == 2 for c in range(4))
    assert np.array_equal(mask, stratified_holdout(labels, 0.2, seed=0))
