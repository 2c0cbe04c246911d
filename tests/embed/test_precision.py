"""bf16 inference on a CPU that has it: the embeddings agree with fp32, and precision is an embed input."""

import json
import logging

import numpy as np
import pytest
from conftest import TINY
from shardmaker import write_shards
from typer.testing import CliRunner

from datapruner import api
from datapruner.cli import app
from datapruner.config import Config
from datapruner.embed.model import cpu_has_bf16, pick_precision
from datapruner.errors import DataprunerError


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision-shards")
    write_shards(root, n_shards=2, per_shard=24)
    return root


def _rows(run, kind: str) -> np.ndarray:
    parts = sorted((run / f"embeddings/{kind}").glob("*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return np.concatenate([np.load(p).astype(np.float32) for p in parts])


def test_auto_is_bf16_exactly_where_the_cpu_computes_it_natively(caplog):
    with caplog.at_level(logging.INFO):
        got = pick_precision("cpu", "auto")
    assert got == ("bf16" if cpu_has_bf16() else "fp32")
    assert ("bf16 natively" if cpu_has_bf16() else "no native bf16") in caplog.text
    assert pick_precision("cpu", "fp32") == "fp32"  # asked for: fp32 even where bf16 is there
    assert pick_precision("cpu", "fp16") in ("bf16", "fp32")  # never fp16 autocast on the CPU


def test_auto_precision_embeddings_agree_with_fp32(shards, tmp_path):
    runs = {}
    for precision in ("fp32", "auto"):
        runs[precision] = tmp_path / precision
        api.embed(str(shards), runs[precision], Config(**TINY, precision=precision, embed_text=True), progress=False)
    for kind in ("img_emb", "text_emb"):
        a, b = _rows(runs["fp32"], kind), _rows(runs["auto"], kind)
        assert a.shape == b.shape == (48, 64)
        cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cosine.min() > 0.99, (kind, cosine.min())
        if cpu_has_bf16():
            assert not np.array_equal(a, b)  # bf16 did run: not the fp32 numbers


def test_changing_precision_is_refused_without_re_embed(shards, tmp_path):
    run = tmp_path / "run"
    api.embed(str(shards), run, Config(**TINY, precision="fp32"), progress=False)
    with pytest.raises(DataprunerError, match="precision: 'fp32' → 'auto'.*--re-embed"):
        api.embed(str(shards), run, Config(**TINY, precision="auto"), progress=False)
    summary = api.embed(str(shards), run, Config(**TINY, precision="auto", re_embed=True), progress=False)
    assert summary["embed"]["parts_reused"] == 0 and summary["embed"]["parts"] == 2


def test_the_precision_flag_of_the_commands_that_embed_is_an_embed_input(shards, tmp_path):
    run = tmp_path / "run"
    flags = ["--model", "datapruner-tiny", "--pretrained", "none", "--num-workers", "0", "--batch-size", "8",
             "--device", "cpu", "-q"]
    first = CliRunner().invoke(app, ["embed", str(shards), "--out", str(run), "--precision", "fp32", *flags])
    assert first.exit_code == 0, first.output
    assert json.loads((run / "run.json").read_text())["embed"]["inputs"]["precision"] == "fp32"
    refused = CliRunner().invoke(app, ["score", str(shards), "--out", str(run), "--precision", "bf16", *flags])
    assert refused.exit_code == 2 and "precision: 'fp32' → 'bf16'" in refused.output
    bad = CliRunner().invoke(app, ["embed", str(shards), "--out", str(tmp_path / "x"), "--precision", "fp8", *flags])
    assert bad.exit_code == 2 and "precision" in bad.output
