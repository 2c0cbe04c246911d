"""The claim machinery on real verify runs: an injected effect is detected, no effect is inconclusive.

The data: three classes in tight clouds around their own axes and a fourth, wide one halfway between the first
two. Keep-easy prototypicality at a kept fraction of 0.5 keeps the samples nearest their centroids, so it drops
the wide class, and its students give that class's test samples to its neighbours, while random keeps every
class: random's subset is known to be the better one. With every label random there is nothing to find, and
the same comparison must come out inconclusive, not as a verdict from noise.
"""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from shardmaker import sample_members, write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.embed.outputs import save_npy, save_parquet
from datapruner.verify.pipeline import VerifySpec

N, DIM, SHARDS = 600, 16, 2


def clouds(rng, n: int):
    labels = rng.integers(0, 4, n)
    centres = np.eye(DIM)[[0, 1, 2, 3]]
    centres[0] = (np.eye(DIM)[1] + np.eye(DIM)[2]) / np.sqrt(2)
    spread = np.where(labels == 0, 0.12, 0.02)[:, None]
    x = centres[labels] + spread * rng.normal(size=(n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def write_embeddings(root: Path, parts: list[tuple[list[str], np.ndarray, np.ndarray]]) -> None:
    for s, (keys, x, labels) in enumerate(parts):
        save_npy(root / f"img_emb/img_emb_{s}.npy", x.astype(np.float16))
        save_parquet(root / f"metadata/metadata_{s}.parquet", pa.table({"key": keys, "label": pa.array(labels, pa.int64())}))


def make_run(root: Path, labels_random: bool) -> tuple[Path, Config]:
    rng = np.random.default_rng(0)
    x, labels = clouds(rng, N)
    test_x, test_labels = clouds(rng, 400)
    if labels_random:
        labels, test_labels = rng.integers(0, 4, N), rng.integers(0, 4, 400)
    per, parts = N // SHARDS, []
    for s in range(SHARDS):
        rows = list(range(s * per, (s + 1) * per))
        keys = [f"{i:06d}" for i in rows]
        write_tar(root / "src" / f"{s:05d}.tar", [(k, sample_members(i, int(labels[i]))) for k, i in zip(keys, rows)])
        parts.append((keys, x[rows], labels[rows]))
    write_embeddings(root / "emb", parts)
    write_embeddings(root / "test_emb", [([f"t{i:05d}" for i in range(400)], test_x, test_labels)])
    cfg = Config(embeddings=str(root / "emb"), clusters=4, device="cpu")
    api.embed(str(root / "src"), root / "run", cfg, progress=False)
    return root / "run", cfg


def proto_easy_vs_random(tmp_path: Path, labels_random: bool) -> dict:
    run, cfg = make_run(tmp_path, labels_random)
    spec = VerifySpec(methods=("random", "proto_easy"), fractions=(0.5, 1.0), seeds=(0, 1, 2, 3, 4), kd_alphas=(0.0,),
                      budget_modes=("convergence",), student="linear", test_src=str(tmp_path / "test_emb"),
                      max_epochs=60, batch_size=64, lr=1e-2, threads=1, workers=2)
    api.verify(run, spec, cfg, progress=False)
    comparisons = json.loads((run / "verify/comparisons.json").read_text())["vs_random"]
    (found,) = [c for c in comparisons if c["method"] == "proto_easy" and c["fraction"] == 0.5]
    return found


def test_a_subset_known_to_be_better_is_detected(tmp_path):
    found = proto_easy_vs_random(tmp_path, labels_random=False)
    assert found["verdict"] == "worse", found
    assert found["diff"] < -0.15 and found["ci"][1] < 0


def test_no_effect_is_inconclusive(tmp_path):
    found = proto_easy_vs_random(tmp_path, labels_random=True)
    assert found["verdict"] == "inconclusive", found
