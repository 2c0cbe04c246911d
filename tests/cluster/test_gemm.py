"""The fast passes and their exact check: the bound holds, and the answers (faiss's nearest centroid, SemDeDup's
bf16 or float32 products) equal brute force in float64, on data built to be full of near-ties."""

import numpy as np
import pytest
import torch

from datapruner.cluster import gemm
from datapruner.cluster.kmeans import fit_centroids
from datapruner.cluster.nearest import CentroidIndex, brute_force_nearest
from datapruner.config import Config
from datapruner.metrics import semdedup
from datapruner.metrics.semdedup import SAME_DIRECTION, max_similarity_to_earlier

CPU = torch.device("cpu")


@pytest.fixture(params=["bf16", "fp32"])
def precision(request, monkeypatch):
    monkeypatch.setenv(gemm.PRECISION_ENV, request.param)
    gemm.gemm_precision.cache_clear()
    yield request.param
    gemm.gemm_precision.cache_clear()


def unit(x):
    x = np.asarray(x, np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def tied_centroids(rng, k, d):
    """Unit centroids with exact copies, 1-ulp neighbours and pairs 1e-4 apart."""
    c = unit(rng.standard_normal((k, d)))
    c[1] = c[0]
    c[3] = np.nextafter(c[2], np.float32(1))
    c[5] = unit((c[4] + 1e-4 * rng.standard_normal(d))[None])[0]
    return c


def tied_rows(rng, c, n):
    """Rows exactly between two centroids, or within bf16 error of that, or near a centroid (the easy case)."""
    k, d = c.shape
    a, b = rng.integers(0, k, n), rng.integers(0, k, n)
    mid = c[a] + c[b]
    noise = rng.choice([0.0, 1e-5, 1e-3, 0.3], size=(n, 1)) * rng.standard_normal((n, d))
    x = unit(mid + noise)
    x[: n // 10] = c[rng.integers(0, k, n // 10)]  # rows equal to a centroid (and to its copies)
    return x


def test_the_bound_covers_every_bf16_error():
    rng = np.random.default_rng(0)
    for d in (16, 512, 1024):
        a = unit(rng.standard_normal((300, d)))
        b = np.concatenate([unit(rng.standard_normal((200, d))), a[:50], -a[50:60]])  # s = ±1 included
        A, B = gemm.prepare(a, CPU, "bf16"), gemm.prepare(b, CPU, "bf16")
        s_hat = gemm.products(A, B)
        err = np.abs(s_hat - a.astype(np.float64) @ b.astype(np.float64).T)
        top = s_hat.max(axis=1)
        bound = gemm.bound_rows(lambda i: s_hat[i], top, gemm.row_bound(A, B), "bf16")
        # every entry that can be a candidate (≥ 0, or any entry of a row whose maximum is near 0) is covered
        relevant = (s_hat >= 0) | (top - 2 * bound <= 0)[:, None]
        assert (err <= bound[:, None])[relevant].all()
        err = err.max(axis=1)
        assert err.max() > bound.min() / 100  # the bf16 pass is really approximate: the bound is not vacuous


def test_pair_similarity_does_not_depend_on_the_batch():
    rng = np.random.default_rng(1)
    x, y = unit(rng.standard_normal((500, 384))), unit(rng.standard_normal((500, 384)))
    whole = gemm.pair_similarity(x, y)
    one_by_one = np.array([gemm.pair_similarity(x[i:i + 1], y[i:i + 1])[0] for i in range(500)])
    assert np.array_equal(whole, one_by_one)
    assert np.array_equal(whole[7:300], gemm.pair_similarity(x[7:300], y[7:300]))


@pytest.mark.parametrize("d", [8, 128])
def test_nearest_centroid_equals_brute_force_on_near_ties(precision, d):
    rng = np.random.default_rng(d)
    c = tied_centroids(rng, 40, d)
    x = tied_rows(rng, c, 3000)
    index = CentroidIndex(c, "cpu")
    ids, sims = index.nearest(x)
    ref_ids, ref_sims = brute_force_nearest(x, c)
    assert np.array_equal(ids, ref_ids)
    assert np.array_equal(sims, ref_sims)
    assert index.stats.rechecked > 100  # the exact check really ran (the data is full of near-ties)
    # plain float32 (what faiss or numpy give) agrees wherever its own rounding cannot flip the answer
    s32 = x @ c.T
    top2 = np.sort(s32, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5
    assert np.array_equal(s32.argmax(axis=1)[clear], ref_ids[clear])


def brute_force_earlier(x):
    out = np.full(len(x), -1.0)
    for i in range(1, len(x)):
        out[i] = gemm.pair_similarity(np.broadcast_to(x[i], (i, x.shape[1])), x[:i]).max()
    out = out.astype(np.float32)
    out[out >= 1.0 - SAME_DIRECTION] = 1.0
    return out


@pytest.mark.parametrize("block", [7, 64, 1000])
def test_max_similarity_to_earlier_equals_brute_force_on_near_ties(precision, block, monkeypatch):
    monkeypatch.setattr(semdedup, "BF16_MIN_ROWS", 1)  # small clusters take the fast pass too
    rng = np.random.default_rng(block)
    base = unit(rng.standard_normal((40, 32)))
    pick = rng.integers(0, 40, 400)
    scale = rng.choice([0.0, 1e-6, 1e-4, 3e-3, 0.1, 1.0], size=(400, 1))
    x = unit(base[pick] + scale * rng.standard_normal((400, 32)))  # copies, near-copies within bf16 error, others
    assert np.array_equal(max_similarity_to_earlier(x, block), brute_force_earlier(x))


def test_kmeans_is_spherical_lloyd_from_the_kmeans_plus_plus_start():
    """faiss's iterations from the project's start equal plain spherical Lloyd steps, and repeat exactly."""
    from datapruner.cluster.kmeans import initial_centroids

    rng = np.random.default_rng(5)
    centers = unit(rng.standard_normal((12, 24)))
    x = unit(centers[rng.integers(0, 12, 3000)] + 0.15 * rng.standard_normal((3000, 24)))
    cfg = Config(seed=3, kmeans_iters=3, device="cpu")
    fitted = fit_centroids(x, 12, cfg)
    reference = initial_centroids(x, 12, np.random.default_rng(cfg.seed))
    for _ in range(cfg.kmeans_iters):
        ids = (x @ reference.T).argmax(axis=1)
        sums = np.zeros_like(reference, dtype=np.float64)
        np.add.at(sums, ids, x)
        reference = unit(sums)
    assert np.allclose(fitted, reference, atol=1e-5)
    assert np.array_equal(fitted, fit_centroids(x, 12, cfg))
    assert np.allclose(np.linalg.norm(fitted, axis=1), 1, atol=1e-6)


def test_precision_is_chosen_at_run_time(monkeypatch):
    monkeypatch.setenv(gemm.PRECISION_ENV, "auto")
    gemm.gemm_precision.cache_clear()
    assert gemm.gemm_precision("cpu") == ("bf16" if gemm.cpu_has_bf16() else "fp32")
    assert gemm.gemm_precision("cuda") == "bf16"
    monkeypatch.setenv(gemm.PRECISION_ENV, "fp16")
    gemm.gemm_precision.cache_clear()
    with pytest.raises(ValueError):
        gemm.gemm_precision("cpu")
    gemm.gemm_precision.cache_clear()
