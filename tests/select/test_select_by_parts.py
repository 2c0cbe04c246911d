"""Selecting part by part writes the very files the in-memory selection writes: keep.parquet byte for byte,
summary.json, keep_uids.npy and the budget's per-cluster table, for every shipped order, budget and filter,
with heavy ties, filters that remove rows, invalid rows, and metadata whose columns differ between parts."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.select import cut
from datapruner.select.manifest import build_manifest_by_parts, build_manifest_in_memory

METRICS = ("prototypicality", "random", "dbp", "semdedup", "clip_score", "el2n_probe")


def make_run(root: Path, parts: int = 4, rows: int = 300, levels: int | None = None, seed: int = 0) -> RunDir:
    """A run whose scores are written as the score step writes them; `levels` rounds every score to that
    many distinct values (ties everywhere)."""
    rng = np.random.default_rng(seed)
    run = RunDir(root)
    shards = [f"/data/shards/{i:05d}.tar" for i in range(parts)]
    run.root.mkdir(parents=True)
    run.run_json.write_text(json.dumps({"shards": shards}))
    for i, shard in enumerate(shards):
        part = run.part_ids()[i]
        n = rows + 17 * i
        keys = [f"{j % (n // 2):06d}" for j in rng.permutation(n)]  # every key twice within a shard
        meta = {"key": keys, "uid": [f"{rng.integers(1 << 62):x}" if j % 7 else None for j in range(n)],
                "caption": [f"c{j}" for j in range(n)], "offset": np.arange(n, dtype=np.int64) * 512,
                "length": np.full(n, 512, np.int64)}
        meta["width"] = np.arange(n, dtype=np.int32 if i % 2 else np.int64)  # widens to int64
        meta["note"] = (np.arange(n) % 3).astype(np.int64) if i == 0 else [f"n{j}" for j in range(n)]  # strings
        if i == 2:
            meta["only_here"] = np.ones(n, np.float64)
        run.metadata(part).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(meta), run.metadata(part))
        columns = {"shard": pa.array([shard] * n), "key": pa.array(keys),
                   "cluster": pa.array(rng.integers(0, 6, n).astype(np.int32)),
                   "dist_to_centroid": pa.array(rng.random(n).astype(np.float32))}
        for name in METRICS:
            values = rng.normal(size=n)
            if levels:
                values = np.round(values * levels / 4) / (levels / 4)
            if name in ("semdedup", "clip_score"):
                values = np.tanh(values)
            columns[f"score_{name}"] = pa.array(values.astype(np.float32))
        columns["score_random"] = pa.array((rng.random(n) if not levels else rng.integers(0, 3, n) / 3)
                                           .astype(np.float32))
        run.scores(part).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), run.scores(part))
        if i == 1:
            errors = pa.table({"shard": [shard] * 3, "key": ["bad0", "bad1", "bad2"], "stage": ["embed"] * 3,
                               "reason": ["decode: truncated", "decode: truncated", "missing image"]})
            run.errors(part).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(errors, run.errors(part))
    return run


def outputs(run: RunDir) -> dict:
    files = {p.name: p.read_bytes() for p in sorted(run.manifest_dir.iterdir())}
    files["summary.json"] = files["summary.json"].replace(str(run.root).encode(), b"RUN")
    return files


POLICIES = [
    *[dict(metric=m, order=o, budget=b) for m in ("prototypicality",) for o in ("hard", "easy", "random")
      for b in ("global", "cluster", "dbp")],
    dict(metric="dbp", order="hard"),
    dict(metric="el2n_probe", order="hard", filters=({"name": "el2n_probe", "offset": 0.02},)),
    dict(metric="prototypicality", order="hard", filters=({"name": "clip_score", "fraction": 0.3},)),
    dict(metric="prototypicality", order="hard", filters=({"name": "clip_score", "threshold": -0.6},)),
    dict(metric="prototypicality", order="hard", budget="dbp", filters=({"name": "semdedup", "fraction": 0.1},)),
    dict(metric="prototypicality", order="easy", budget="cluster", filters=({"name": "semdedup", "eps": 0.05},)),
    dict(metric="dbp", order="hard", filters=({"name": "semdedup", "eps": 0.1}, {"name": "clip_score", "fraction": 0.2},
                                              {"name": "el2n_probe", "offset": 0.05})),
    dict(metric="random", order="random", budget="cluster",
         filters=({"name": "clip_score", "fraction": 0.3}, {"name": "semdedup", "fraction": 0.2})),
]


@pytest.fixture(params=[None, 3], ids=["distinct", "heavy-ties"])
def runs(request, tmp_path):
    a = make_run(tmp_path / "a", levels=request.param)
    b = RunDir(shutil.copytree(a.root, tmp_path / "b"))
    return a, b


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: "-".join(
    [p["metric"], p["order"], p.get("budget", "global"), *(f"{f['name']}" for f in p.get("filters", ()))]))
@pytest.mark.parametrize("keep", [0.3, 0.5])
def test_part_by_part_writes_what_the_in_memory_selection_writes(runs, policy, keep, monkeypatch):
    monkeypatch.setattr(cut, "BAND_ROWS", 16)  # many narrowing passes, and bands collected across parts
    monkeypatch.setattr(cut, "HISTOGRAM_CELLS", 64)
    in_memory, by_parts = runs
    cfg = Config(**policy, keep=keep)
    expected = build_manifest_in_memory(in_memory, keep, cfg)
    got = build_manifest_by_parts(by_parts, keep, cfg)
    assert got["counts"] == expected["counts"] and got["reasons"] == expected["reasons"]
    assert outputs(by_parts) == outputs(in_memory)
    manifest = pq.read_table(by_parts.keep_parquet)
    assert manifest.num_rows == expected["counts"]["samples"] and 0 < expected["counts"]["kept"] < manifest.num_rows


def test_with_default_band_sizes_too(tmp_path):
    a = make_run(tmp_path / "a", parts=3, rows=2000, levels=5)
    b = RunDir(shutil.copytree(a.root, tmp_path / "b"))
    cfg = Config(metric="prototypicality", order="hard", budget="dbp", filters=({"name": "semdedup", "fraction": 0.1},))
    build_manifest_in_memory(a, 0.4, cfg)
    build_manifest_by_parts(b, 0.4, cfg)
    assert outputs(a) == outputs(b)


def test_both_refuse_a_keep_the_filters_cannot_meet_with_the_same_message(tmp_path):
    run = make_run(tmp_path / "a", parts=2, rows=100)
    cfg = Config(metric="prototypicality", order="hard", filters=({"name": "clip_score", "fraction": 0.6},))
    messages = []
    for build in (build_manifest_in_memory, build_manifest_by_parts):
        with pytest.raises(DataprunerError) as caught:
            build(run, 0.5, cfg)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "the filters left" in messages[0]


def test_ties_at_the_threshold_go_to_the_first_shard_and_key(tmp_path):
    run = make_run(tmp_path / "a", parts=3, rows=100, levels=2)
    cfg = Config(metric="prototypicality", order="easy")
    build_manifest_by_parts(run, 0.25, cfg)
    table = pq.read_table(run.keep_parquet).filter(pa.compute.is_valid(pa.compute.field("cluster")))
    kept = table.filter(table.column("kept"))
    assert kept.num_rows == round(0.25 * table.num_rows)
    score = table.column("score_prototypicality").to_numpy()
    threshold = kept.column("score_prototypicality").to_numpy().max()
    tied = table.filter(pa.array(score == threshold)).select(["shard", "key", "kept"]).to_pylist()
    assert 0 < sum(r["kept"] for r in tied) < len(tied)  # the cut falls inside a band of equal scores
    ordered = sorted(tied, key=lambda r: (r["shard"], r["key"]))
    flags = [r["kept"] for r in ordered]
    assert flags == sorted(flags, reverse=True)  # kept ones first in (shard, key) order


def test_order_keys_sort_as_numpy_sorts_floats():
    values = np.array([0.5, -0.0, 0.0, np.nan, -np.inf, np.inf, -1e-300, 1e-300, -2.5, -np.nan, 3.0])
    keys = cut.order_keys(values)
    rows = np.arange(len(values))
    assert (np.lexsort((rows, keys)) == np.lexsort((rows, values))).all()
    assert keys[1] == keys[2] and keys[3] == keys[9]
