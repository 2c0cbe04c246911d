"""SemDeDup against a brute-force O(n²) pass, and on real shards with planted near-duplicates."""

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from shardmaker import write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.metrics.cluster_groups import ClusterBatch, batch_bounds
from datapruner.metrics.semdedup import duplicate_scores, max_similarity_to_earlier


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force_max_to_earlier(x):
    x = x.astype(np.float64)
    return np.array([-1.0 if j == 0 else max(float(x[i] @ x[j]) for i in range(j)) for j in range(len(x))])


@pytest.mark.parametrize("n, block", [(1, 4), (7, 3), (64, 64), (150, 16), (150, 1000)])
def test_blocked_scores_equal_the_brute_force_pass(n, block):
    rng = np.random.default_rng(n)
    x = unit_rows(rng, n, 12)
    x[n // 2:] = x[: n - n // 2] + 0.01 * rng.normal(size=(n - n // 2, 12))  # near-duplicates of earlier rows
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert np.allclose(max_similarity_to_earlier(x, block), brute_force_max_to_earlier(x), atol=1e-5)


@pytest.mark.parametrize("order", ["hard", "easy"])
def test_cluster_scores_follow_the_documented_order(order):
    rng = np.random.default_rng(3)
    n = 200
    batch = ClusterBatch(emb=unit_rows(rng, n, 8).astype(np.float16), cluster=rng.integers(0, 5, n).astype(np.int32),
                         dist=rng.choice([0.1, 0.2, 0.3], n).astype(np.float32),  # ties: (part, row) decides
                         part=rng.integers(0, 3, n).astype(np.int32), row=rng.permutation(n).astype(np.int64))
    got = duplicate_scores(batch, order, block=16)
    emb = batch.emb.astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)  # stored float16 rows are renormalised before comparing
    for c in range(5):
        members = [i for i in range(n) if batch.cluster[i] == c]
        sign = -1 if order == "hard" else 1
        members.sort(key=lambda i: (sign * batch.dist[i], batch.part[i], batch.row[i]))
        for pos, i in enumerate(members):
            expected = -1.0 if pos == 0 else max(emb[i] @ emb[j] for j in members[:pos])
            assert got[i] == pytest.approx(expected, abs=1e-5)


def test_batches_hold_whole_clusters_within_the_row_bound():
    assert batch_bounds(np.array([3, 3, 3, 10, 1, 1]), 6) == [(0, 2), (2, 3), (3, 4), (4, 6)]


def block_image(seed: int, flip_pixel: bool = False) -> bytes:
    """A random 8×8 colour grid, upscaled: distinct seeds give clearly different embeddings."""
    grid = (np.random.default_rng(seed).random((8, 8, 3)) * 255).astype(np.uint8)
    pixels = np.kron(grid, np.ones((5, 5, 1), np.uint8))
    if flip_pixel:
        pixels[0, 0] = 255 - pixels[0, 0]
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def planted_shards(root, originals=36, groups=6):
    """3 shards: `originals` distinct images; for the first `groups`, an exact copy and a 1-pixel variant
    in later shards. Returns {group: the keys of its members}."""
    samples = [[], [], []]
    members = {g: [f"o{g:04d}"] for g in range(groups)}
    for i in range(originals):
        samples[i % 3].append((f"o{i:04d}", {"png": block_image(i), "txt": f"image {i}".encode()}))
    for g in range(groups):
        samples[(g + 1) % 3].append((f"c{g:04d}", {"png": block_image(g), "txt": f"copy {g}".encode()}))
        samples[(g + 2) % 3].append((f"v{g:04d}", {"png": block_image(g, True), "txt": f"variant {g}".encode()}))
        members[g] += [f"c{g:04d}", f"v{g:04d}"]
    for s, rows in enumerate(samples):
        write_tar(root / f"dups-{s}.tar", rows)
    return members


def test_planted_near_duplicates_are_removed_keeping_one_of_each_group(tmp_path):
    from conftest import TINY

    members = planted_shards(tmp_path / "src")
    cfg = Config(**TINY, clusters=3, shard_size=100, filters=({"name": "semdedup", "eps": 1e-3},),
                 metric_options={"semdedup": {"max_rows": 20, "block": 8}})  # several batches and blocks
    summary = api.score(str(tmp_path / "src"), tmp_path / "run", 0.5, cfg, progress=False)
    rows = pq.read_table(tmp_path / "run/manifest/keep.parquet").to_pylist()
    removed = {r["key"] for r in rows if r["reason"] == "removed by filter semdedup"}
    for keys in members.values():
        assert len(set(keys) - removed) == 1, keys
    assert removed <= {k for keys in members.values() for k in keys}
    assert len(removed) == 2 * len(members)
    assert summary["select"]["counts"]["kept"] == round(0.5 * len(rows))


@pytest.mark.parametrize("eps", [1e-3, 1e-6])
def test_byte_identical_copies_across_shards_are_exact_duplicates(tmp_path, eps):
    """Stored float16 embeddings are renormalised before comparing: a copy scores exactly 1, so any eps > 0
    removes every copy but one per group (without renormalising, copies scored 0.9997–0.99995)."""
    from conftest import TINY

    samples = [[], [], []]
    for i in range(30):
        samples[i % 3].append((f"o{i:04d}", {"png": block_image(i), "txt": f"image {i}".encode()}))
    for g in range(5):
        for copy in (1, 2):
            samples[(g + copy) % 3].append((f"c{g}-{copy}", {"png": block_image(g), "txt": f"copy {g}".encode()}))
    for s, rows in enumerate(samples):
        write_tar(tmp_path / "src" / f"copies-{s}.tar", rows)
    cfg = Config(**TINY, clusters=2, filters=({"name": "semdedup", "eps": eps},))
    api.score(str(tmp_path / "src"), tmp_path / "run", 0.75, cfg, progress=False)  # 30 of 40 are not copies
    rows = pq.read_table(tmp_path / "run/manifest/keep.parquet").to_pylist()
    groups = {g: {f"o{g:04d}", f"c{g}-1", f"c{g}-2"} for g in range(5)}
    removed = {r["key"] for r in rows if r["reason"] == "removed by filter semdedup"}
    assert removed <= set().union(*groups.values())
    for keys in groups.values():
        assert len(keys - removed) == 1, keys
    scores = pq.read_table(tmp_path / "run/scores", columns=["key", "score_semdedup"]).to_pylist()
    assert all(r["score_semdedup"] == 1.0 for r in scores if r["key"] in removed)
