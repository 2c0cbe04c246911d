import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from conftest import TINY

from datapruner import api
from datapruner.config import Config
from datapruner.io.tar_samples import iter_samples


def _pruned_samples(run: Path) -> list[dict]:
    shards = sorted(str(p) for p in (run / "shards").glob("*.tar"))
    return list(wds.WebDataset(shards, shardshuffle=False)) if shards else []


def _source_members(shard_dir: Path) -> dict[tuple[str, str], dict[str, bytes]]:
    out = {}
    for path in sorted(shard_dir.glob("*.tar")):
        with open(path, "rb") as f:
            for s in iter_samples(f):
                out[(str(path), s.key)] = s.members
    return out


def _brute_force_distances(run: Path) -> dict[str, float]:
    """Cosine distance to the nearest centroid, from the files, in plain numpy."""
    centroids = np.load(run / "clusters/centroids.npy")
    dist = {}
    for npy in sorted((run / "embeddings/img_emb").glob("*.npy")):
        part = npy.stem.split("_")[-1]
        emb = np.load(npy).astype(np.float64)
        keys = pq.read_table(run / f"embeddings/metadata/metadata_{part}.parquet").column("key").to_pylist()
        for key, d in zip(keys, 1 - (emb @ centroids.T.astype(np.float64)).max(axis=1)):
            dist[key] = d
    return dist


def test_pruned_shards_hold_exactly_k_byte_identical_samples(scored_run, shard_dir):
    samples = _pruned_samples(scored_run)
    assert len(samples) == round(0.3 * 60) == 18
    manifest = pq.read_table(scored_run / "manifest/keep.parquet").to_pylist()
    kept = {(r["shard"], r["key"]) for r in manifest if r["kept"]}
    source = _source_members(shard_dir)
    by_key = {key: shard for shard, key in kept}
    assert {s["__key__"] for s in samples} == set(by_key)
    for s in samples:
        members = {k: v for k, v in s.items() if not k.startswith("__")}
        assert members == source[(by_key[s["__key__"]], s["__key__"])]
    assert len(manifest) == 60 and sum(r["kept"] for r in manifest) == 18
    assert {r["reason"] for r in manifest} == {"kept", "below the global budget"}


def test_pruned_shards_have_the_configured_size_and_stats(scored_run):
    tars = sorted((scored_run / "shards").glob("*.tar"))
    assert [p.name for p in tars] == ["000000.tar", "000001.tar"]
    with tarfile.open(tars[0]) as tar:
        assert len({m.name.split(".")[0] for m in tar.getmembers()}) == 16
    stats = (scored_run / "shards/000001_stats.json").read_text()
    assert '"samples": 2' in stats


@pytest.mark.parametrize("order, farthest", [("hard", True), ("easy", False)])
def test_orders_keep_the_farthest_or_nearest_samples(run_copy, order, farthest):
    api.select(run_copy, 0.25, Config(order=order))
    dist = _brute_force_distances(run_copy)
    ranked = sorted(dist, key=lambda k: (-dist[k] if farthest else dist[k], k))
    manifest = pq.read_table(run_copy / "manifest/keep.parquet").to_pylist()
    kept = {r["key"] for r in manifest if r["kept"]}
    assert len(kept) == 15
    # kept = the brute-force top 15, up to float16 ties at the boundary
    boundary = dist[ranked[14]]
    assert all((dist[k] >= boundary - 1e-4) if farthest else (dist[k] <= boundary + 1e-4) for k in kept)
    assert len(kept & set(ranked[:15])) >= 14


def test_per_cluster_budget_keeps_uniform_quotas(run_copy):
    summary = api.select(run_copy, 0.5, Config(budget="cluster"))["select"]
    sizes, kept = np.array(summary["clusters"]["size"]), np.array(summary["clusters"]["kept"])
    assert kept.sum() == 30
    share = 30 / len(sizes)
    assert np.all((kept == sizes) | (np.abs(kept - kept[kept < sizes].max(initial=share)) <= 1))
    dist = _brute_force_distances(run_copy)
    manifest = pq.read_table(run_copy / "manifest/keep.parquet").to_pylist()
    for c in range(len(sizes)):
        rows = [r for r in manifest if r["cluster"] == c]
        kept_d = [dist[r["key"]] for r in rows if r["kept"]]
        dropped_d = [dist[r["key"]] for r in rows if not r["kept"]]
        if kept_d and dropped_d:
            assert min(kept_d) >= max(dropped_d) - 1e-4


def test_same_inputs_and_seed_give_the_same_manifest(scored_run, shard_dir, tmp_path):
    again = tmp_path / "again"
    api.score(str(shard_dir), again, 0.3, Config(**TINY, clusters=4, shard_size=16), progress=False)
    assert (again / "manifest/keep.parquet").read_bytes() == (scored_run / "manifest/keep.parquet").read_bytes()
    for a, b in zip(sorted((again / "shards").iterdir()), sorted((scored_run / "shards").iterdir())):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()


def test_new_keep_fraction_reuses_the_embeddings(run_copy):
    """Only select and write do work: assignments and scores are reused, no earlier output is rewritten."""
    earlier = [p for d in ("embeddings", "errors", "clusters", "scores") for p in (run_copy / d).rglob("*")]
    before = {p: p.stat().st_mtime_ns for p in earlier}
    selected = api.select(run_copy, 0.5, Config())
    summary = api.write(run_copy, Config(shard_size=16), progress=False)["write"]
    for step in ("assign", "measure"):
        assert selected[step]["parts_reused"] == selected[step]["parts"] == 3, selected[step]
    assert summary["samples"] == 30 and len(_pruned_samples(run_copy)) == 30
    assert {p: p.stat().st_mtime_ns for p in earlier} == before


def test_keep_uids_are_in_datacomp_format(scored_run):
    uids = np.load(scored_run / "manifest/keep_uids.npy")
    assert uids.dtype == np.dtype("u8,u8") and len(uids) == 18
    pairs = [tuple(map(int, u)) for u in uids]
    assert pairs == sorted(pairs)
    manifest = pq.read_table(scored_run / "manifest/keep.parquet").to_pylist()
    expected = sorted((int(r["uid"][:16], 16), int(r["uid"][16:], 16)) for r in manifest if r["kept"])
    assert pairs == expected


def test_precomputed_embeddings_skip_embedding_and_give_the_same_manifest(scored_run, shard_dir, tmp_path):
    run = tmp_path / "pre"
    cfg = Config(**{**TINY, "model": "no-such-model"}, clusters=4, shard_size=16,
                 embeddings=str(scored_run / "embeddings"))
    api.score(str(shard_dir), run, 0.3, cfg, progress=False)
    assert (run / "embeddings/img_emb").is_dir()  # the run's own parts, joined from the precomputed folder
    assert pq.read_table(run / "manifest/keep.parquet").equals(pq.read_table(scored_run / "manifest/keep.parquet"))


def test_keep_zero_and_one(run_copy):
    assert api.select(run_copy, 0.0, Config())["select"]["counts"]["kept"] == 0
    assert api.select(run_copy, 1.0, Config())["select"]["counts"]["kept"] == 60
    with pytest.raises(ValueError, match=r"--keep 1.5: must be a number in \[0, 1\]"):
        api.select(run_copy, 1.5, Config())


def test_killed_score_resumes_to_the_same_manifest_and_shards(tmp_path):
    from shardmaker import write_shards

    src = tmp_path / "src"
    write_shards(src, n_shards=6, per_shard=40)
    args = [sys.executable, "-m", "datapruner.cli", "score", str(src), "--keep", "0.4", "--model", "datapruner-tiny",
            "--pretrained", "none", "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "--clusters", "5",
            "--shard-size", "10", "-q"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(args + ["--out", str(full)], check=True, capture_output=True)
    proc = subprocess.Popen(args + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (killed / "_done/embed").exists() or len(list((killed / "_done/embed").iterdir())) < 2:
        assert proc.poll() is None, "score finished before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest").exists()
    subprocess.run(args + ["--out", str(killed)], check=True, capture_output=True)
    assert (full / "manifest/keep.parquet").read_bytes() == (killed / "manifest/keep.parquet").read_bytes()
    full_shards = sorted((full / "shards").iterdir())
    assert [p.name for p in full_shards] == [p.name for p in sorted((killed / "shards").iterdir())]
    assert all(p.read_bytes() == (killed / "shards" / p.name).read_bytes() for p in full_shards)
    assert len(_pruned_samples(killed)) == 96


def test_a_new_selection_leaves_no_stale_optional_outputs(run_copy):
    api.select(run_copy, 0.3, Config(metric="dbp"))
    assert (run_copy / "manifest/dbp_clusters.parquet").exists()
    api.select(run_copy, 0.0, Config())
    assert not (run_copy / "manifest/dbp_clusters.parquet").exists()
    assert not (run_copy / "manifest/keep_uids.npy").exists()


def test_map_steps_run_in_groups_match_one_call(scored_run, shard_dir, tmp_path):
    """What an orchestrator does with api.partition: each group of parts as its own call."""
    run = tmp_path / "grouped"
    cfg = Config(**TINY, clusters=4, shard_size=16, embed_text=True)  # as scored_run
    src = str(shard_dir)
    for group in api.partition("embed", run, cfg, groups=2, src=src):
        api.embed(src, run, cfg, progress=False, parts=group)
    api.step("cluster", run, cfg)
    for group in api.partition("assign", run, cfg, groups=2):
        api.step("assign", run, cfg, parts=group)
    api.step("fit", run, cfg)
    for group in reversed(api.partition("measure", run, cfg, groups=3)):
        api.step("measure", run, cfg, progress=False, parts=group)
    api.step("select", run, cfg.replace(keep=0.3))
    groups = api.partition("write", run, cfg, groups=5)
    assert groups == [[0], [1]]
    for group in groups:
        summary = api.step("write", run, cfg, progress=False, parts=group)
        assert summary["parts"] == 1 and summary["parts_reused"] == 0
    for sub in ("embeddings", "scores", "manifest", "shards"):
        expected = {p.relative_to(scored_run): p.read_bytes() for p in (scored_run / sub).rglob("*") if p.is_file()}
        got = {p.relative_to(run): p.read_bytes() for p in (run / sub).rglob("*") if p.is_file()}
        assert got == expected, sub


def test_the_join_steps_run_in_groups_match_one_call(scored_run, shard_dir, tmp_path):
    """With --embeddings, index, scan and join fan out like the other map steps: in groups, the same files."""
    cfg = Config(**TINY, clusters=4, shard_size=16, embeddings=str(scored_run / "embeddings"))
    src, whole, grouped = str(shard_dir), tmp_path / "whole", tmp_path / "grouped"
    api.embed(src, whole, cfg, progress=False)
    for name in ("index", "scan", "join", "embed"):
        groups = api.partition(name, grouped, cfg, groups=2, src=src)
        assert len(groups) == 2 or name in ("index", "join"), (name, groups)  # small: one file, one bucket
        for group in reversed(groups):
            api.step(name, grouped, cfg, src=src, progress=False, parts=group)
    for sub in ("embeddings", "join"):
        expected = {p.relative_to(whole): p.read_bytes() for p in (whole / sub).rglob("*") if p.is_file()}
        got = {p.relative_to(grouped): p.read_bytes() for p in (grouped / sub).rglob("*") if p.is_file()}
        assert got == expected and got, sub


def test_laion_style_embeddings_without_byte_ranges_still_write_the_same_shards(scored_run, shard_dir, tmp_path):
    """clip-retrieval metadata has key and caption but no shard or byte range: write finds them by a scan."""
    import shutil

    emb = tmp_path / "laion_emb"
    shutil.copytree(scored_run / "embeddings", emb)
    for path in (emb / "metadata").glob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.select(["key", "caption"]), path)
    run = tmp_path / "laion"
    api.score(str(shard_dir), run, 0.3, Config(**TINY, clusters=4, shard_size=16, embeddings=str(emb)), progress=False)
    expected = {p.name: p.read_bytes() for p in (scored_run / "shards").glob("*.tar")}
    assert {p.name: p.read_bytes() for p in (run / "shards").glob("*.tar")} == expected
    kept = pq.read_table(run / "manifest/keep.parquet").to_pylist()
    assert sum(r["kept"] for r in kept) == 18 and all(r["shard"].endswith(".tar") for r in kept)


def test_assignments_are_computed_once_and_shared_by_metric_fits_and_scoring(run_copy):
    assigned = sorted((run_copy / "clusters/assign").glob("cluster_*.npy"))
    assert len(assigned) == 3
    before = {p.name: p.stat().st_mtime_ns for p in assigned}
    api.select(run_copy, 0.3, Config(metric="el2n_probe", filters=({"name": "semdedup", "fraction": 0.1},)))
    assert {p.name: p.stat().st_mtime_ns for p in (run_copy / "clusters/assign").glob("cluster_*.npy")} == before
