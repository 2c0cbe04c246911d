"""DBP quotas against scipy's generic constrained solver, and the budget against a hand computation."""

import numpy as np
import pyarrow as pa
import pytest
from scipy.optimize import minimize

from datapruner.config import Config
from datapruner.metrics.dbp import inter_cluster_distance
from datapruner.select.dbp import balance_floor, concept_probabilities, dbp_clusters, dbp_quotas
from datapruner.select.policy import select_table


def scipy_qp(targets, lower, upper, total):
    """min Σ(N − t)² s.t. Σ N = total, lower ≤ N ≤ upper, by SLSQP (a generic solver, test only).

    Solved in units of `total` (x = N / total) so the solver's tolerances are scale-free."""
    t, lo, hi = targets / total, lower / total, upper / total
    res = minimize(lambda x: ((x - t) ** 2).sum(), np.clip(t, lo, hi), jac=lambda x: 2 * (x - t), method="SLSQP",
                   bounds=list(zip(lo, hi)),
                   constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones_like(x)}],
                   options={"ftol": 1e-14, "maxiter": 2000})
    assert res.success, res.message
    return res.x * total


def random_instance(rng):
    k = int(rng.integers(2, 40))
    sizes = rng.integers(1, 60, k)
    sizes[rng.random(k) < 0.3] = rng.integers(1, 4)  # some clusters far smaller than their share
    complexity = rng.random(k) * 0.3
    total = int(rng.integers(1, sizes.sum() + 1))
    tau, beta = float(rng.choice([0.02, 0.1, 1.0])), float(rng.choice([0.0, 0.5, 1.0]))
    return sizes, complexity, total, tau, beta


@pytest.mark.parametrize("seed", range(40))
def test_quotas_equal_the_generic_qp_solution(seed):
    sizes, complexity, total, tau, beta = random_instance(np.random.default_rng(seed))
    p = concept_probabilities(complexity, sizes > 0, tau)
    lower = balance_floor(sizes, total, beta)
    continuous, quotas = dbp_quotas(p, sizes, total, lower)
    expected = scipy_qp(p * total, lower.astype(float), sizes.astype(float), total)
    assert np.allclose(continuous, expected, atol=1e-4 * max(1, total))
    assert quotas.sum() == total
    assert (quotas >= lower).all() and (quotas <= sizes).all()
    assert np.abs(quotas - continuous).max() < 1


def test_small_clusters_are_capped_and_their_share_goes_to_the_others():
    sizes = np.array([2, 100, 100, 100])
    p = concept_probabilities(np.array([0.9, 0.1, 0.1, 0.1]), sizes > 0, 0.1)  # cluster 0 wants most of K
    continuous, quotas = dbp_quotas(p, sizes, 90, np.zeros(4, np.int64))
    assert quotas[0] == 2 and quotas.sum() == 90
    assert np.allclose(continuous, scipy_qp(p * 90, np.zeros(4), sizes.astype(float), 90), atol=1e-3)


def test_inter_cluster_distance_is_the_mean_distance_to_the_l_nearest_other_centroids():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(12, 8)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    got = inter_cluster_distance(c, neighbours=3)
    sim = c @ c.T
    for j in range(12):
        others = np.sort(np.delete(sim[j], j))[::-1][:3]
        assert got[j] == pytest.approx((1 - others).mean(), abs=1e-5)
    assert np.allclose(inter_cluster_distance(c, neighbours=50), [(1 - np.delete(sim[j], j)).mean() for j in range(12)],
                       atol=1e-5)


def scores_table(rng, n=400, k=6):
    cluster = rng.integers(0, k, n)
    cluster[:k] = np.arange(k)
    dist = rng.random(n).astype(np.float32) * 0.5
    d_inter = rng.random(k).astype(np.float32) + 0.2
    return pa.table({"shard": ["s"] * n, "key": [f"{i:05d}" for i in range(n)], "cluster": cluster.astype(np.int32),
                     "dist_to_centroid": dist, "score_dbp": (d_inter[cluster] * dist).astype(np.float32),
                     "score_prototypicality": dist, "score_random": rng.random(n).astype(np.float32)}), d_inter


def test_budget_table_matches_a_hand_computation():
    rng = np.random.default_rng(1)
    table, d_inter = scores_table(rng)
    alive = rng.random(table.num_rows) < 0.8
    cfg = Config(budget="dbp", metric_options={"dbp": {"tau": 0.05, "beta": 0.5}})
    got = dbp_clusters(table, alive, 120, cfg).to_pydict()
    cl, dist = table.column("cluster").to_numpy(), table.column("dist_to_centroid").to_numpy().astype(np.float64)
    k = len(d_inter)
    sizes = np.array([(alive & (cl == j)).sum() for j in range(k)])
    d_intra = np.array([dist[alive & (cl == j)].mean() for j in range(k)])
    c = d_intra * d_inter
    p = np.exp(c / 0.05) / np.exp(c / 0.05).sum()
    lower = np.minimum(int(0.5 * 120 / k), sizes)
    assert np.array_equal(got["size"], sizes)
    assert np.allclose(got["d_intra"], d_intra, rtol=1e-5) and np.allclose(got["d_inter"], d_inter, rtol=1e-4)
    assert np.allclose(got["complexity"], c, rtol=1e-4) and np.allclose(got["p"], p, rtol=1e-4)
    expected = scipy_qp(p * 120, lower.astype(float), sizes.astype(float), 120)
    assert sum(got["quota"]) == 120 and np.abs(np.array(got["quota"]) - expected).max() < 1


def test_select_keeps_each_quota_by_prototypicality_and_metric_dbp_is_the_same_policy():
    rng = np.random.default_rng(2)
    table, _ = scores_table(rng)
    notes = {}
    by_budget = select_table(table, 0.3, Config(metric="prototypicality", order="hard", budget="dbp"), notes)
    by_metric = select_table(table, 0.3, Config(metric="dbp", order="hard"))
    kept = by_budget.column("kept").to_numpy(zero_copy_only=False)
    assert kept.sum() == round(0.3 * table.num_rows)
    assert np.array_equal(kept, by_metric.column("kept").to_numpy(zero_copy_only=False))
    quotas = notes["budget_clusters"].column("quota").to_numpy()
    cl, dist = table.column("cluster").to_numpy(), table.column("dist_to_centroid").to_numpy()
    for j, q in enumerate(quotas):
        members = np.flatnonzero(cl == j)
        hardest = members[np.argsort(-dist[members], kind="stable")[:q]]
        assert set(np.flatnonzero(kept & (cl == j))) == set(hardest)
