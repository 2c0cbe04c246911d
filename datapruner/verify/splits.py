"""How verify divides a run's labelled rows: test hold-out, validation split, and nested pools.

Every split is stratified by label and seeded. With `group` (a metadata column, e.g. a json field naming the
source photo or video), rows sharing a group value always land on the same side, so near-duplicates cannot
cross a split. Pools are nested (the 25 % pool lies inside the 50 % one): the abundance axis varies the data
while everything else stays put.
"""

from __future__ import annotations

import numpy as np

from datapruner.errors import DataprunerError


def holdout_mask(labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """A bool mask of about `fraction` of each class's rows (of each class's groups, when groups are given)."""
    if not 0.0 < fraction < 1.0:
        raise DataprunerError(f"a hold-out fraction must lie in (0, 1), got {fraction}")
    if groups is not None:
        return _group_holdout(labels, groups, fraction, seed)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n = min(len(rows) - 1, max(1, round(fraction * len(rows)))) if len(rows) > 1 else 0
        mask[rng.choice(rows, size=n, replace=False)] = True
    return mask


def _group_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whole groups held out, stratified by each group's most common label."""
    names, group_of = np.unique(groups.astype(str), return_inverse=True)
    majority = np.array([np.bincount(labels_c).argmax() for labels_c in _labels_per_group(labels, group_of, len(names))])
    chosen = holdout_mask(majority, fraction, seed) if len(names) > 1 else np.zeros(len(names), bool)
    return chosen[group_of]


def _labels_per_group(labels: np.ndarray, group_of: np.ndarray, count: int) -> list[np.ndarray]:
    _, codes = np.unique(labels, return_inverse=True)
    order = np.argsort(group_of, kind="stable")
    return np.split(codes[order], np.cumsum(np.bincount(group_of, minlength=count))[:-1])


def nested_pools(labels: np.ndarray, shares: tuple[float, ...], seed: int) -> dict[float, np.ndarray]:
    """{share: sorted row indices}: per class a seeded order, each pool its first round(share · n_c) rows."""
    for share in shares:
        if not 0.0 < share <= 1.0:
            raise DataprunerError(f"a pool share must lie in (0, 1], got {share}")
    rng = np.random.default_rng(seed)
    orders = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    return {share: np.sort(np.concatenate([rows[:max(1, round(share * len(rows)))] for rows in orders.values()]))
            for share in shares}
