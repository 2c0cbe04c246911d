"""Precomputed embeddings in the layouts their tools write, joined to the shards: the same manifest and
byte-identical pruned shards as embedding the shards directly, from the same vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY
from shardmaker import sample_members, write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.errors import DataprunerError

SIZES = [8, 8, 8, 0, 8, 8, 8]  # shard 3: every download failed, so the tar has no sample
CORE = ["shard", "key", "kept", "reason", "cluster"]


def _members(idx: int) -> dict[str, bytes]:
    m = sample_members(idx, idx % 4, ["jpg", "png", "webp"][idx % 3])
    m["json"] = json.dumps({"uid": f"{idx:032x}", "url": f"https://img.example/{idx}.jpg", "key": f"{idx:06d}",
                            "width": 40, "height": 40, "status": "success", "exif": {"Make": "x"}}).encode()
    return m


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layouts") / "src"
    start = 0
    for s, n in enumerate(SIZES):
        write_tar(root / f"{s:05d}.tar", [(f"{i:06d}", _members(i)) for i in range(start, start + n)])
        start += n
    # img2dataset's parquet beside the first shard: a failed download has a row but no sample
    rows = [{"key": f"{i:06d}", "url": f"https://img.example/{i}.jpg", "status": "success", "error_message": None,
             "sha256": f"{i:064x}", "original_width": 80} for i in range(8)]
    rows.append({"key": "999999", "url": "https://img.example/gone.jpg", "status": "failed_to_download",
                 "error_message": "404", "sha256": None, "original_width": None})
    pq.write_table(pa.Table.from_pylist(rows), root / "00000.parquet")
    return root


def _cfg(**kw) -> Config:
    return Config(**TINY, clusters=3, shard_size=16, **kw)


@pytest.fixture(scope="module")
def direct(source, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("direct") / "run"
    api.score(str(source), run, 0.5, _cfg(embed_text=True), progress=False)  # text, for the round trip
    return run


@pytest.fixture(scope="module")
def vectors(direct) -> list[dict]:
    """Every valid sample of the direct run: its shard index, key, uid, url, caption and vectors."""
    out = []
    for i in range(len(SIZES)):
        meta = pq.read_table(direct / f"embeddings/metadata/metadata_{i}.parquet").to_pylist()
        img = np.load(direct / f"embeddings/img_emb/img_emb_{i}.npy")
        txt_path = direct / f"embeddings/text_emb/text_emb_{i}.npy"
        txt = np.load(txt_path) if txt_path.exists() else np.zeros_like(img)
        for row, e, t in zip(meta, img, txt):
            out.append({**row, "s": i, "img": e, "txt": t})
    return out


def _write_reader_parts(root: Path, parts: list[list[dict]], columns, dtype, text=True) -> Path:
    for p, rows in enumerate(parts):
        (root / "img_emb").mkdir(parents=True, exist_ok=True)
        (root / "metadata").mkdir(parents=True, exist_ok=True)
        dim = len(parts[0][0]["img"])
        np.save(root / f"img_emb/img_emb_{p}.npy", np.array([r["img"] for r in rows], dtype).reshape(-1, dim))
        if text:
            (root / "text_emb").mkdir(exist_ok=True)
            np.save(root / f"text_emb/text_emb_{p}.npy", np.array([r["txt"] for r in rows], dtype).reshape(-1, dim))
        pq.write_table(pa.Table.from_pylist([columns(r) for r in rows]), root / f"metadata/metadata_{p}.parquet")
    return root


def _snapshot(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _prune_from(source: Path, emb: Path, out: Path, **kw) -> dict:
    before = _snapshot(emb)
    summary = api.score(str(source), out, 0.5, _cfg(embeddings=str(emb), **kw), progress=False)
    assert _snapshot(emb) == before, "the run wrote into the embeddings folder"
    return summary


def _assert_same_run(direct: Path, run: Path) -> None:
    a, b = pq.read_table(direct / "manifest/keep.parquet"), pq.read_table(run / "manifest/keep.parquet")
    assert a.select(CORE).to_pylist() == b.select(CORE).to_pylist()
    for name in a.column_names:
        if name.startswith("score_") or name == "dist_to_centroid":
            np.testing.assert_allclose(a.column(name).to_numpy(zero_copy_only=False),
                                       b.column(name).to_numpy(zero_copy_only=False), atol=1e-6)
    shards_a = {p.name: p.read_bytes() for p in sorted((direct / "shards").glob("*.tar"))}
    shards_b = {p.name: p.read_bytes() for p in sorted((run / "shards").glob("*.tar"))}
    assert shards_a and shards_a == shards_b
    for i in range(len(SIZES)):
        ea = np.load(direct / f"embeddings/img_emb/img_emb_{i}.npy")
        eb = np.load(run / f"embeddings/img_emb/img_emb_{i}.npy")
        assert ea.tobytes() == eb.tobytes() and eb.dtype == np.float16
        ma = pq.read_table(direct / f"embeddings/metadata/metadata_{i}.parquet")
        mb = pq.read_table(run / f"embeddings/metadata/metadata_{i}.parquet")
        assert ma.select(["shard", "key", "offset", "length", "uid", "caption", "label"]) == \
               mb.select(["shard", "key", "offset", "length", "uid", "caption", "label"])


def test_direct_run_keeps_the_sources_fields(direct):
    meta = pq.read_table(direct / "embeddings/metadata/metadata_0.parquet")
    row = meta.to_pylist()[0]
    assert row["url"] == "https://img.example/0.jpg" and row["width"] == 40 and row["status"] == "success"
    assert json.loads(row["exif"]) == {"Make": "x"}  # nested: JSON text
    assert row["sha256"] == f"{0:064x}" and row["original_width"] == 80  # the parquet beside the tar
    assert row["key"] == "000000" and "error_message" in meta.column_names
    assert meta.schema.field("width").type == pa.int64()


def test_clip_retrieval_round_robin_without_metadata(source, direct, vectors, tmp_path):
    """clip-retrieval: parts hold shards round-robin (here 3 parts over 7 shards), columns image_path and
    caption only, float16; the all-failed shard has no row anywhere."""
    parts = [[v for v in vectors if v["s"] % 3 == p] for p in range(3)]
    emb = _write_reader_parts(tmp_path / "emb", parts, lambda r: {"image_path": r["key"], "caption": r["caption"]},
                              np.float16)
    summary = _prune_from(source, emb, tmp_path / "run")
    _assert_same_run(direct, tmp_path / "run")
    assert summary["join"]["unmatched_embeddings"] == 0
    info = json.loads((tmp_path / "run/run.json").read_text())
    assert info["precomputed"]["kind"] == "embedding-reader" and info["precomputed"]["join_key"] == "image_path"
    assert not info.get("embeddings_dir")
    tab = pq.read_table(tmp_path / "run/embeddings/metadata/metadata_0.parquet")
    assert "url" in tab.column_names  # the shard's json fields, as in a direct run


def test_embedding_reader_float32_contiguous_parts_joined_by_key(source, direct, vectors, tmp_path):
    parts = [vectors[i:i + 20] for i in range(0, len(vectors), 20)]
    emb = _write_reader_parts(tmp_path / "emb", parts, lambda r: {"key": r["key"], "caption": r["caption"]},
                              np.float32)
    _prune_from(source, emb, tmp_path / "run")
    _assert_same_run(direct, tmp_path / "run")
    for i in (0, 6):
        a = np.load(direct / f"embeddings/text_emb/text_emb_{i}.npy")
        b = np.load(tmp_path / f"run/embeddings/text_emb/text_emb_{i}.npy")
        assert a.tobytes() == b.tobytes()


def _laion_columns(r: dict) -> dict:
    return {"image_path": r["key"], "caption": r["caption"], "NSFW": "UNLIKELY", "similarity": 0.3,
            "LICENSE": "?", "url": r["url"], "key": r["key"], "status": "success", "error_message": None,
            "width": 40, "height": 40, "original_width": 40, "original_height": 40, "exif": None, "md5": "ab" * 16}


def test_laion_parts_that_do_not_line_up_with_shards(source, direct, vectors, tmp_path):
    """LAION's shipped layout: 3 parts over 7 shards, rows shuffled, float16, metadata with key, url,
    similarity, …; rows of images that are not in the shards are counted."""
    rng = np.random.default_rng(0)
    strangers = [{"key": f"zz{i:04d}", "url": f"https://elsewhere/{i}", "caption": "x",
                  "img": (lambda v: v / np.linalg.norm(v))(rng.normal(size=64)).astype(np.float16),
                  "txt": np.zeros(64, np.float16)} for i in range(5)]
    rows = [vectors[i] for i in rng.permutation(len(vectors))] + strangers
    rows = [rows[i] for i in rng.permutation(len(rows))]
    parts = [rows[0:20], rows[20:40], rows[40:]]
    emb = _write_reader_parts(tmp_path / "emb", parts, _laion_columns, np.float16, text=False)
    summary = _prune_from(source, emb, tmp_path / "run")
    _assert_same_run(direct, tmp_path / "run")
    assert summary["join"]["unmatched_embeddings"] == 5
    info = json.loads((tmp_path / "run/run.json").read_text())
    assert info["precomputed"]["kind"] == "laion" and info["precomputed"]["join_key"] == "key"
    assert info["counts"]["unmatched_embeddings"] == 5
    meta = pq.read_table(tmp_path / "run/embeddings/metadata/metadata_1.parquet")
    assert meta.column("similarity").to_pylist()[0] == pytest.approx(0.3)
    assert meta.column("NSFW").to_pylist()[0] == "UNLIKELY"
    assert meta.column("caption").to_pylist() == pq.read_table(
        direct / "embeddings/metadata/metadata_1.parquet").column("caption").to_pylist()  # ours win


def _write_datacomp(root: Path, vectors: list[dict], rng) -> Path:
    root.mkdir(parents=True)
    for s in sorted({v["s"] for v in vectors}):
        rows = [v for v in vectors if v["s"] == s]
        rows = [rows[i] for i in rng.permutation(len(rows))]
        pq.write_table(pa.Table.from_pylist([{"uid": r["uid"], "url": r["url"], "text": r["caption"],
                                              "original_width": 40, "clip_b32_similarity_score": 0.25}
                                             for r in rows]), root / f"{s:08d}.parquet")
        np.savez(root / f"{s:08d}.npz", b32_img=np.array([r["img"] for r in rows], np.float16),
                 b32_txt=np.array([r["txt"] for r in rows], np.float16),
                 l14_img=rng.normal(size=(len(rows), 12)).astype(np.float16))
    return root


def test_datacomp_npz_joined_by_uid(source, direct, vectors, tmp_path):
    emb = _write_datacomp(tmp_path / "emb", vectors, np.random.default_rng(1))
    with pytest.raises(DataprunerError, match="embeddings_column"):
        api.score(str(source), tmp_path / "refused", 0.5, _cfg(embeddings=str(emb)), progress=False)
    _prune_from(source, emb, tmp_path / "run", embeddings_column="b32_img")
    _assert_same_run(direct, tmp_path / "run")
    info = json.loads((tmp_path / "run/run.json").read_text())
    assert info["precomputed"]["kind"] == "datacomp" and info["precomputed"]["join_key"] == "uid"
    meta = pq.read_table(tmp_path / "run/embeddings/metadata/metadata_0.parquet")
    assert set(meta.column("clip_b32_similarity_score").to_pylist()) == {0.25}


def test_samples_without_an_embedding_are_invalid_with_a_reason(source, vectors, tmp_path):
    dropped = {"000002", "000041"}
    rows = [v for v in vectors if v["key"] not in dropped]
    emb = _write_reader_parts(tmp_path / "emb", [rows], lambda r: {"url": r["url"]}, np.float16, text=False)
    summary = _prune_from(source, emb, tmp_path / "run")
    assert summary["counts"]["errors"] == 2 and summary["counts"]["valid"] == len(vectors) - 2
    keep = pq.read_table(tmp_path / "run/manifest/keep.parquet").to_pylist()
    reasons = {r["key"]: r["reason"] for r in keep if r["key"] in dropped}
    assert len(reasons) == 2
    assert all(r.startswith("invalid at join: no embedding") and "url" in r for r in reasons.values())
    errors = pq.read_table(tmp_path / "run/errors/part-0.parquet").to_pylist()
    assert [e["key"] for e in errors] == ["000002"] and errors[0]["stage"] == "join"


def test_rerun_reuses_every_part(source, vectors, tmp_path):
    emb = _write_reader_parts(tmp_path / "emb", [vectors], lambda r: {"key": r["key"]}, np.float16, text=False)
    _prune_from(source, emb, tmp_path / "run")
    again = _prune_from(source, emb, tmp_path / "run")
    for step in ("index", "scan", "join", "embed"):
        assert again[step]["parts"] == again[step]["parts_reused"] > 0


def test_an_unknown_join_column_is_refused_before_anything_is_written(source, vectors, tmp_path):
    emb = _write_reader_parts(tmp_path / "emb", [vectors], lambda r: {"key": r["key"]}, np.float16, text=False)
    with pytest.raises(DataprunerError, match="join_key 'uid'"):
        api.score(str(source), tmp_path / "run", 0.5, _cfg(embeddings=str(emb), join_key="uid"), progress=False)
    assert not (tmp_path / "run/embeddings").exists()
