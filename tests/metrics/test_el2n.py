"""EL2N: the score of a fixed tiny probe by hand, and the out-of-core fit on a real run."""

import math

import numpy as np
import pytest
import torch

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.metrics.el2n import EL2N, el2n_scores, probes_path, write_labels
from datapruner.metrics.scoring import load_part


def test_linear_ensemble_score_equals_a_hand_computation():
    # two probes, d = 2, C = 2; x = (1, 0), label 0
    params = {"w": torch.tensor([[[math.log(3), 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]),
              "b": torch.zeros(2, 1, 2)}
    # probe 1: logits (ln 3, 0) → softmax (3/4, 1/4) → error (−1/4, 1/4), norm √2/4
    # probe 2: logits (0, 0) → (1/2, 1/2) → error (−1/2, 1/2), norm √2/2;  mean = 3√2/8
    got = el2n_scores(params, np.array([[1.0, 0.0]], np.float32), np.array([0]))
    assert got[0] == pytest.approx(3 * math.sqrt(2) / 8, abs=1e-6)


def test_mlp_probe_score_equals_a_hand_computation():
    # one probe: hidden = relu(x·w1 + b1) = relu((2, −1)) = (2, 0); logits = hidden·w2 = (0, 2·ln 4 / 2) = (0, ln 4)
    params = {"w1": torch.tensor([[[2.0, -1.0]]]), "b1": torch.zeros(1, 1, 2),
              "w2": torch.tensor([[[0.0, math.log(4) / 2], [5.0, 5.0]]]), "b2": torch.zeros(1, 1, 2)}
    got = el2n_scores(params, np.array([[1.0]], np.float32), np.array([1]))
    # softmax (1/5, 4/5), label 1: error (1/5, −1/5), norm √2/5
    assert got[0] == pytest.approx(math.sqrt(2) / 5, abs=1e-6)


def test_fit_streams_the_parts_saves_probes_and_scores_every_part(run_copy):
    run = RunDir(run_copy)
    cfg = Config(metric="el2n_probe", metric_options={"el2n_probe": {"epochs": 4, "models": 3, "chunk_rows": 25, "batch_size": 8}})
    metric = EL2N()
    metric.fit(run, cfg, metric.options(cfg))
    assert probes_path(run).exists()
    params = torch.load(probes_path(run), weights_only=True)
    assert params["w"].shape == (3, 64, 4)  # 3 probes, d = 64, 4 data labels
    scores = []
    for part, shard in zip(run.part_ids(), run.shards()):
        data = load_part(run, part, cfg)
        s = metric.score(data, cfg)
        assert s.shape == (data.meta.num_rows,) and s.dtype == np.float32
        assert ((s >= 0) & (s <= math.sqrt(2) + 1e-6)).all()
        labels = np.searchsorted(np.load(run.metric_dir("el2n_probe") / "classes.npy"), data.meta.column("label").to_numpy())
        assert np.allclose(s, el2n_scores(params, data.img_emb, labels), atol=1e-6)
        scores.append(s)
    assert np.concatenate(scores).std() > 0


def test_labels_fall_back_to_cluster_ids(run_copy):
    run = RunDir(run_copy)
    assert write_labels(run, "cluster") == 4  # k = 4 clusters
    labels = np.concatenate([np.load(run.metric_dir("el2n_probe") / f"labels/part-{p}.npy") for p in run.part_ids()])
    assert labels.min() >= 0 and labels.max() < 4


def test_the_old_name_el2n_is_read_as_el2n_probe_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'el2n' is deprecated: it is 'el2n_probe'"):
        cfg = Config(metric="el2n", metrics=("el2n",), filters=({"name": "el2n", "offset": 0.02},),
                     metric_options={"el2n": {"epochs": 2}})
    assert (cfg.metric, cfg.metrics, cfg.filters) == ("el2n_probe", ("el2n_probe",), ({"name": "el2n_probe", "offset": 0.02},))
    assert cfg.options_for("el2n_probe") == {"epochs": 2} and EL2N.name == "el2n_probe"
