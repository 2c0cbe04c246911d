"""clip_score against numpy on a real run; the clip_score and el2n filters on a table."""

import numpy as np
import pyarrow as pa
import pytest

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.metrics.clip_score import ClipScore
from datapruner.metrics.scoring import load_part
from datapruner.select.filters import clip_score_filter, el2n_offset_filter


def test_clip_score_is_the_rowwise_cosine_of_image_and_text(scored_run):
    run = RunDir(scored_run)
    part = run.part_ids()[0]
    data = load_part(run, part, Config())
    img = np.load(scored_run / f"embeddings/img_emb/img_emb_{part}.npy").astype(np.float64)
    txt = np.load(scored_run / f"embeddings/text_emb/text_emb_{part}.npy").astype(np.float64)
    expected = [float(img[i] @ txt[i]) for i in range(len(img))]
    assert np.allclose(ClipScore().score(data, Config()), expected, atol=1e-4)


def _table(values, name):
    n = len(values)
    return pa.table({"shard": ["s"] * n, "key": [f"{i:03d}" for i in range(n)], name: np.asarray(values, np.float32)})


def test_clip_score_filter_by_threshold_and_by_fraction():
    table = _table([0.3, 0.1, 0.25, 0.1, 0.05, 0.4], "score_clip_score")
    alive = np.ones(6, bool)
    assert clip_score_filter(table, alive, {"threshold": 0.2}, Config()).tolist() == [0, 1, 0, 1, 1, 0]
    # the lowest 2 of 6: 0.05, then the tie at 0.1 goes to the smaller key
    assert clip_score_filter(table, alive, {"fraction": 1 / 3}, Config()).tolist() == [0, 1, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="exactly one"):
        clip_score_filter(table, alive, {"threshold": 0.2, "fraction": 0.1}, Config())


def test_el2n_offset_drops_the_hardest_alive_share():
    table = _table([0.9, 0.1, 0.8, 0.7], "score_el2n_probe")
    alive = np.array([False, True, True, True])
    assert el2n_offset_filter(table, alive, {"offset": 1 / 3}, Config()).tolist() == [0, 0, 1, 0]
