"""The marker contract: rerunning on an existing RUN with one changed input gives what a fresh run with
that input gives, file for file (no stale file left), or, for an embed input, is refused before any work."""

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import TINY

from datapruner import api
from datapruner.config import Config
from datapruner.errors import DataprunerError

BASE = Config(**TINY, clusters=4, shard_size=16)
OUTPUTS = ("embeddings", "errors", "clusters", "metrics", "scores", "manifest", "shards")


def outputs(run: Path) -> dict[str, bytes]:
    """Every output file, with the run's own path (recorded in summaries) written as RUN."""
    root = str(run).encode()
    return {str(p.relative_to(run)): p.read_bytes().replace(root, b"RUN")
            for sub in OUTPUTS for p in sorted((run / sub).rglob("*")) if p.is_file()}


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


CHANGES = {
    "k": dict(clusters=3),
    "kmeans_iters": dict(kmeans_iters=1),  # a cap below what the tolerance stop needs here
    "metric_option": dict(metric="dbp", metric_options={"dbp": {"tau": 0.02}}),
    "keep": dict(keep=0.5),
    "shard_size": dict(shard_size=7),
    "seed_with_pretrained_embeddings": dict(seed=5),  # the embeddings do not depend on it here (precomputed)
}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, shard_dir) -> Path:
    run = tmp_path_factory.mktemp("contract") / "base"
    api.score(str(shard_dir), run, 0.3, BASE, progress=False)
    return run


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_changed_input_recomputes_to_what_a_fresh_run_gives(name, base_run, shard_dir, tmp_path):
    changed = BASE.replace(**CHANGES[name])
    if name == "seed_with_pretrained_embeddings":
        emb = tmp_path / "precomputed"
        shutil.copytree(base_run / "embeddings", emb)
        base = tmp_path / "rerun"
        api.score(str(shard_dir), base, 0.3, BASE.replace(embeddings=str(emb)), progress=False)
        changed = changed.replace(embeddings=str(emb))
    else:
        base = tmp_path / "rerun"
        shutil.copytree(base_run, base)
    api.score(str(shard_dir), base, changed.keep if "keep" in CHANGES[name] else 0.3, changed, progress=False)
    fresh = tmp_path / "fresh"
    api.score(str(shard_dir), fresh, changed.keep if "keep" in CHANGES[name] else 0.3, changed, progress=False)
    assert outputs(base) == outputs(fresh)
    assert outputs(base) != outputs(base_run)  # the change did change something


EMBED_CHANGES = {
    "model": dict(model="RN50"),
    "pretrained": "checkpoint",
    "seed": dict(seed=1),  # a random init depends on it
    "caption_field": dict(caption_field="text"),
    "precision": dict(precision="fp16"),
}


@pytest.mark.parametrize("name", sorted(EMBED_CHANGES))
def test_a_changed_embed_input_is_refused_before_any_work(name, base_run, shard_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    change = EMBED_CHANGES[name]
    if change == "checkpoint":
        ckpt = tmp_path / "weights.pt"
        ckpt.write_bytes(b"not loaded: the refusal comes first")
        change = dict(pretrained=str(ckpt))
    before = tree_hashes(run)
    with pytest.raises(DataprunerError) as err:
        api.score(str(shard_dir), run, 0.3, BASE.replace(**change), progress=False)
    field = next(iter(change))
    assert f"{field}:" in str(err.value) and "--re-embed" in str(err.value) and "--out" in str(err.value)
    assert tree_hashes(run) == before


def test_re_embed_replaces_the_embeddings_and_everything_after(base_run, shard_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    changed = BASE.replace(seed=1)
    api.score(str(shard_dir), run, 0.3, changed.replace(re_embed=True), progress=False)
    fresh = tmp_path / "fresh"
    api.score(str(shard_dir), fresh, 0.3, changed, progress=False)
    assert outputs(run) == outputs(fresh)


def test_a_new_selection_leaves_no_pruned_shard_or_report_of_the_old_one(base_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    summary = api.select(run, 0.5, BASE)
    assert not list((run / "shards").glob("*.tar"))  # the 0.3 shards are gone, and the summary says so
    assert summary["select"]["removed_stale"]["write"] > 0
    html = (run / "report/index.html").read_text()
    assert "keep the hardest 50 %" in html and "keep the hardest 30 %" not in html  # rebuilt, not keep 0.3
    api.write(run, BASE, progress=False)
    assert outputs(run)["manifest/keep.parquet"] != outputs(base_run)["manifest/keep.parquet"]
    assert sum(1 for _ in (run / "shards").glob("*.tar")) == 2  # 30 kept / 16 per shard


def test_a_step_whose_input_is_missing_says_which_command_to_run(base_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    shutil.rmtree(run / "_done/cluster")
    with pytest.raises(DataprunerError, match="datapruner cluster"):
        api.select(run, 0.5, BASE)
