"""The whole verify path on real shards: scores → subsets → teacher → students (CE and KD) → outputs."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner import api
from datapruner.verify.pipeline import VerifySpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import TINY  # noqa: E402
from shardmaker import write_shards  # noqa: E402

CFG = Config(**TINY, clusters=4, shard_size=16)


METHODS = ("random", "proto_hard", "proto_easy", "dbp")


def run_verify(run, cfg, progress=False, **options):
    return api.verify(run, VerifySpec(**options), cfg, progress=progress)


def test_verify_writes_the_results_table_plots_and_fits(run_copy, tmp_path):
    summary = run_verify(run_copy, CFG, methods=METHODS, fractions=(0.5, 1.0), seeds=(0, 1, 2),
                         kd_alphas=(0.0, "auto"), budget_modes=("fixed_epochs", "fixed_steps"), student="mlp",
                         test_fraction=0.25, epochs=3, batch_size=16, width=32, threads=1, progress=False)
    out = run_copy / "verify"
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == summary["rows"] == 2 * len(METHODS) * 2 * 3 * 2
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    for row in rows:
        assert row["budget_mode"] in ("fixed_epochs", "fixed_steps") and row["regime"] in ("data-limited", "compute-limited")
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["smallest_class_share"] <= 1.0
        assert row["kd"] == (row["alpha"] > 0) and row["kept"] == round(row["fraction"] * summary["n_train"])
    auto = {r["alpha"] for r in rows if r["alpha_setting"] == "auto" and r["fraction"] == 0.5}
    assert auto == {0.75}
    # fixed steps: every student gets the same steps; fixed epochs: steps scale with the subset
    assert len({r["steps"] for r in rows if r["budget_mode"] == "fixed_steps"}) == 1
    assert len({r["steps"] for r in rows if r["budget_mode"] == "fixed_epochs"}) == 2
    # fraction 1.0 is the same subset for every method: trained once per (seed, alpha, steps)
    assert summary["students_trained"] < len(rows)
    fits = json.loads((out / "power_law.json").read_text())
    assert len(fits) == 2 * len(METHODS) * 2 and all("exponent" in f for f in fits)
    for name in ("accuracy_vs_fraction_fixed_epochs.png", "accuracy_vs_fraction_fixed_steps.png",
                 "error_vs_size_fixed_epochs.png", "claims.json", "summary.md"):
        assert (out / name).stat().st_size > 0


def test_verify_cnn_on_images_with_class_balance(run_copy, tmp_path):
    test_dir = tmp_path / "test_shards"
    write_shards(test_dir, n_shards=1, per_shard=12, start=1000)
    out = tmp_path / "out"
    summary = run_verify(run_copy, CFG, methods=("proto_hard",), fractions=(0.2, 1.0), seeds=(0,), kd_alphas=(0.0, 1.0),
                         budget_modes=("fixed_steps",), student="cnn", balance="class", test_src=str(test_dir),
                         epochs=2, batch_size=16, width=32, image_size=16, threads=1, out=out, progress=False)
    rows = json.loads((out / "results.json").read_text())
    assert summary["n_test"] == 12 and len(rows) == 4
    # class-balanced quotas: all 4 classes survive even at 20 %
    assert all(r["classes_present"] == 4 and r["balance"] == "class" for r in rows)


def test_kd_student_reproduces_the_teacher_soft_labels(scored_run, one_thread):
    """alpha=1 learns the teacher's soft labels (even with the labels scrambled); alpha=0 does not as well."""
    from datapruner import api
    from datapruner.verify.data import run_embedding_split
    from datapruner.verify.students import make_student
    from datapruner.verify.train import TrainSpec, predict_logits, soft_label_gap, train_student

    table = api.load_scores(scored_run)
    data = run_embedding_split(RunDir(scored_run), table)
    x = torch.from_numpy((data.x - data.x.mean(0)) / (data.x.std(0) + 1e-6))
    y = torch.from_numpy(data.y)
    torch.manual_seed(0)
    teacher = make_student("mlp", (x.shape[1],), 4, 32)
    train_student(teacher, x, y, TrainSpec(epochs=10, batch_size=16, lr=1e-2), seed=0)
    t_logits = predict_logits(teacher, x)

    def student_gap(alpha, labels):
        torch.manual_seed(1)
        model = make_student("mlp", (x.shape[1],), 4, 32)
        train_student(model, x, labels, TrainSpec(epochs=30, batch_size=16, lr=1e-2, alpha=alpha), seed=1, teacher_logits=t_logits)
        return soft_label_gap(model, x, t_logits, 4.0)

    scrambled = y[torch.from_numpy(np.random.default_rng(0).permutation(len(y)))]
    kd, ce, kd_scrambled = student_gap(1.0, y), student_gap(0.0, y), student_gap(1.0, scrambled)
    assert kd < ce / 2
    assert kd_scrambled == pytest.approx(kd, rel=1e-5)  # alpha=1: the loss reads only the teacher
