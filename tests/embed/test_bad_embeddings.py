"""Rows no similarity can be taken on (NaN, inf, zero) make their samples invalid, "bad embedding", from
--embeddings DIR or from the model's writer; a pickled array is refused without running its code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shardmaker import sample_members, write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.embed.outputs import write_embed_part
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

SHARDS, PER_SHARD, DIM = 5, 100, 32
BAD_IMAGE = {7: "nan component", 123: "nan row", 250: "inf", 377: "zero"}  # 4 rows of 500, and one text row:
BAD_TEXT = 444  # 1 % of the rows in all


def _key(i: int) -> str:
    return f"{i:06d}"


def _vectors(rng, labels: np.ndarray) -> np.ndarray:
    centres = rng.normal(size=(4, DIM))
    v = centres[labels] + 0.3 * rng.normal(size=(len(labels), DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)


def _spoil(img: np.ndarray, txt: np.ndarray) -> None:
    img[7, 5] = np.nan
    img[123] = np.nan
    img[250, 0] = np.inf
    img[377] = 0
    txt[BAD_TEXT, 2] = -np.inf


@pytest.fixture(scope="module")
def spoiled(tmp_path_factory) -> tuple[Path, Path]:
    """Real shards (images, captions, labels) and their embeddings with 1 % of the rows spoiled."""
    root = tmp_path_factory.mktemp("spoiled")
    n = SHARDS * PER_SHARD
    for s in range(SHARDS):
        write_tar(root / f"src/{s:05d}.tar", [(_key(i), sample_members(i, i % 4, ["jpg", "png", "webp"][i % 3]))
                                              for i in range(s * PER_SHARD, (s + 1) * PER_SHARD)])
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 4
    img, txt = _vectors(rng, labels), _vectors(rng, labels)
    _spoil(img, txt)
    emb = root / "emb"
    for sub in ("img_emb", "text_emb", "metadata"):
        (emb / sub).mkdir(parents=True)
    np.save(emb / "img_emb/img_emb_0.npy", img)
    np.save(emb / "text_emb/text_emb_0.npy", txt)
    pq.write_table(pa.table({"key": [_key(i) for i in range(n)]}), emb / "metadata/metadata_0.parquet")
    return root / "src", emb


def test_one_percent_bad_rows_are_invalid_and_the_run_completes(spoiled, tmp_path):
    src, emb = spoiled
    cfg = Config(embeddings=str(emb), clusters=5, shard_size=64, device="cpu", budget="cluster",
                 filters=({"name": "clip_score", "fraction": 0.1},), metrics=("clip_score",))
    api.score(str(src), tmp_path / "run", 0.3, cfg, progress=False)
    rd = RunDir(tmp_path / "run")
    bad = {_key(i) for i in [*BAD_IMAGE, BAD_TEXT]}
    errors = pq.read_table(rd.errors_dir).to_pylist()
    assert {e["key"] for e in errors} == bad
    assert all(e["stage"] == "embed" and e["reason"].startswith("bad embedding: its ") for e in errors)
    assert {Path(e["shard"]).name for e in errors} == {f"{s:05d}.tar" for s in range(SHARDS)}

    keep = pq.read_table(rd.keep_parquet).to_pylist()
    assert len(keep) == SHARDS * PER_SHARD and len({(r["shard"], r["key"]) for r in keep}) == len(keep)
    assert {r["key"] for r in keep if r["reason"].startswith("invalid at embed: bad embedding")} == bad
    valid = [r for r in keep if not r["reason"].startswith("invalid")]
    assert all(np.isfinite(r["score_clip_score"]) and r["cluster"] is not None for r in valid)
    assert sum(r["kept"] for r in keep) == round(0.3 * (SHARDS * PER_SHARD - len(bad)))

    summary = json.loads(rd.summary_json.read_text())
    assert summary["reasons"]["invalid at embed: bad embedding"] == len(bad)
    assert json.loads(rd.run_json.read_text())["counts"]["errors"] == len(bad)
    page = rd.report_html.read_text()
    assert "bad embedding" in page and page.count("data:image/png;base64,") >= 3


def test_the_writer_moves_bad_model_rows_to_errors(tmp_path):
    """What embed/embedding.py's _finish_shard writes: the model's float32 rows, one NaN, one zero, one inf
    text row; a zero text row for a sample without a caption is how no caption is stored, and stays."""
    rd = RunDir(tmp_path / "run")
    img = np.eye(5, 8, dtype=np.float32)
    img[1, 3], img[2] = np.nan, 0
    txt = np.eye(5, 8, dtype=np.float32)
    txt[3, 0], txt[4] = np.inf, 0
    rows = [{"shard": "s.tar", "key": f"k{i}", "caption": None if i == 4 else f"c{i}"} for i in range(5)]
    bad = write_embed_part(rd, "0", "s.tar", img, txt, rows, [{"key": "k9", "stage": "decode", "reason": "no image"}])
    assert bad == 3
    assert pq.read_table(rd.metadata("0")).column("key").to_pylist() == ["k0", "k4"]
    assert np.load(rd.img_emb("0")).shape == np.load(rd.text_emb("0")).shape == (2, 8)
    errors = pq.read_table(rd.errors("0")).to_pylist()
    assert [(e["key"], e["stage"]) for e in errors] == [("k9", "decode"), ("k1", "embed"), ("k2", "embed"),
                                                        ("k3", "embed")]
    assert errors[1]["reason"] == "bad embedding: its image embedding has 1 NaN or infinite components of 8"
    assert errors[2]["reason"] == "bad embedding: its image embedding is a zero vector"
    assert errors[3]["reason"].startswith("bad embedding: its text embedding has 1 NaN")


class _Payload:
    """An object whose unpickling would create a file: the proof that no code from DIR runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_array_is_refused_and_none_of_its_code_runs(spoiled, tmp_path):
    src, good = spoiled
    emb = tmp_path / "emb"
    marker = tmp_path / "unpickled"
    (emb / "img_emb").mkdir(parents=True)
    (emb / "metadata").mkdir()
    payload = np.empty(SHARDS * PER_SHARD, object)
    payload[:] = [_Payload(marker)] * len(payload)
    np.save(emb / "img_emb/img_emb_0.npy", payload, allow_pickle=True)
    (emb / "metadata/metadata_0.parquet").write_bytes((good / "metadata/metadata_0.parquet").read_bytes())
    with pytest.raises(DataprunerError, match="img_emb_0.npy holds Python objects"):
        api.score(str(src), tmp_path / "run", 0.3, Config(embeddings=str(emb), device="cpu"), progress=False)
    assert not marker.exists() and not (tmp_path / "run").exists()
