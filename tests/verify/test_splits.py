"""Hold-outs are stratified and seeded, groups never straddle a split, pools are nested."""

import numpy as np
import pytest

from datapruner.verify.splits import holdout_mask, nested_pools


def test_stratified_holdout():
    labels = np.repeat(np.arange(4), 10)
    mask = holdout_mask(labels, 0.2, seed=0)
    assert all(mask[labels == c].sum() == 2 for c in range(4))
    assert np.array_equal(mask, holdout_mask(labels, 0.2, seed=0))
    with pytest.raises(ValueError):
        holdout_mask(labels, 1.0, seed=0)


def test_a_group_stays_on_one_side():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 4)  # e.g. four crops of one photo
    labels = np.repeat(rng.integers(0, 5, 50), 4)
    mask = holdout_mask(labels, 0.2, seed=3, groups=groups.astype(str))
    for g in range(50):
        assert len(set(mask[groups == g])) == 1
    assert 0.1 < mask.mean() < 0.3


def test_pools_are_nested_and_stratified():
    labels = np.repeat(np.arange(3), [40, 80, 120])
    pools = nested_pools(labels, (0.25, 0.5, 1.0), seed=0)
    assert len(pools[1.0]) == 240 and set(pools[0.25]) <= set(pools[0.5]) <= set(pools[1.0])
    assert np.bincount(labels[pools[0.25]]).tolist() == [10, 20, 30]
