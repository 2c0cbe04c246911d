"""The triangle-inequality nearest-centroid search gives brute force's answer, ties and copies included."""

import numpy as np
import pytest

from datapruner.cluster import bounded
from datapruner.cluster.bounded import BoundedSearch
from datapruner.cluster.nearest import CentroidIndex, brute_force_nearest


def unit(x):
    x = np.asarray(x, np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


PER_CONCEPT = 6


def concept_centroids(rng, concepts=12, per_concept=PER_CONCEPT, d=48):
    """Centroids in tight families (so the bound prunes), with an exact copy and a 1-ulp neighbour."""
    heads = rng.standard_normal((concepts, d))
    c = unit(np.repeat(heads, per_concept, axis=0) + 0.25 * rng.standard_normal((concepts * per_concept, d)))
    c[1] = c[0]
    c[3] = np.nextafter(c[2], np.float32(1))
    return c


def rows_near(rng, c, n):
    """Rows near a centroid, exactly between two, equal to one (and so to its copy), or far from all."""
    k, d = c.shape
    a = rng.integers(0, k, n)
    b = a - a % PER_CONCEPT + rng.integers(0, PER_CONCEPT, n)  # a centroid of the same family
    x = unit(c[a] + rng.choice([0.005, 0.02], size=(n, 1)) * rng.standard_normal((n, d)))
    x[: n // 5] = unit(c[a[: n // 5]] + c[b[: n // 5]])  # ties between two centroids
    x[n // 5: n // 4] = c[a[n // 5: n // 4]]
    x[n // 4: n // 4 + 20] = unit(rng.standard_normal((20, d)))
    return x


def test_the_search_equals_brute_force_and_compares_with_few_centroids():
    rng = np.random.default_rng(0)
    c = concept_centroids(rng)
    x = rows_near(rng, c, 2000)
    search = BoundedSearch(c)
    ids = search.nearest(x)
    ref, _ = brute_force_nearest(x, c)
    assert np.array_equal(ids, ref)
    assert search.compared / search.rows < 0.5 * len(c)  # it pruned: not brute force in disguise


def test_any_proposal_still_gives_the_exact_answer(monkeypatch):
    """The answer does not depend on the proposal: with the worst one (a random centroid) it is still exact."""
    rng = np.random.default_rng(1)
    c = concept_centroids(rng)
    x = rows_near(rng, c, 600)
    search = BoundedSearch(c)
    worst = rng.integers(0, len(c), len(x))
    monkeypatch.setattr(search, "proposal", lambda rows: (worst, np.einsum("ij,ij->i", rows, c[worst])))
    assert np.array_equal(search.nearest(x), brute_force_nearest(x, c)[0])


@pytest.mark.parametrize("spread", [0.05, 3.0])
def test_the_index_uses_the_search_only_while_it_pays(monkeypatch, spread):
    """Tight rows keep the bounded search; rows as near to every centroid as to their own make the index go back
    to one product with every centroid. The answer is brute force's both ways."""
    monkeypatch.setattr(bounded, "MIN_CLUSTERS", 16)
    monkeypatch.setattr(bounded, "CHUNK", 500)
    rng = np.random.default_rng(2)
    c = concept_centroids(rng)
    x = unit(c[rng.integers(0, len(c), 1500)] + spread * rng.standard_normal((1500, c.shape[1])))
    index = CentroidIndex(c, "cpu", one_pass=True)
    ids, sims = index.nearest(x)
    ref_ids, ref_sims = brute_force_nearest(x, c)
    assert np.array_equal(ids, ref_ids) and np.array_equal(sims, ref_sims)
    assert (index._bounded is not False) == (spread < 1)
