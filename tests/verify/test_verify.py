"""The whole verify path on real shards: scores → subsets → teacher → students (CE and KD) → outputs."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datapruner.config import Config
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
                         kd_alphas=(0.0, 0.5, 0.9), budget_modes=("convergence", "fixed_steps"), student="mlp",
                         test_fraction=0.25, epochs=3, max_epochs=20, batch_size=16, width=32, threads=1,
                         progress=False)
    out = run_copy / "verify"
    rows = json.loads((out / "results.json").read_text())
    grid = 2 * len(METHODS) * 2 * 3
    assert len(rows) == summary["rows"] == grid * 3 + grid  # no KD, two fixed alphas, and the alpha val chose
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    for row in rows:
        assert row["budget_mode"] in ("convergence", "fixed_steps") and isinstance(row["converged"], bool)
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["label_tv"] <= 1.0 and row["val_loss"] > 0
        assert row["kd"] == (row["alpha"] > 0) and row["kept"] == round(row["fraction"] * row["pool_size"])
    chosen = [r for r in rows if r["alpha_setting"] == "val"]
    assert len(chosen) == grid and {r["alpha"] for r in chosen} <= {0.5, 0.9}
    # fixed steps: every student gets the same steps; convergence: at most max_epochs passes over its subset
    assert len({r["steps"] for r in rows if r["budget_mode"] == "fixed_steps"}) == 1
    assert all(r["epochs_on_subset"] <= 20 for r in rows if r["budget_mode"] == "convergence")
    # fraction 1.0 is the same subset for every method: trained once per (seed, alpha, budget)
    assert summary["students_trained"] < len(rows)
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 60
    for name in ("claims.json", "summary.md", "comparisons.json", "power_law.json", "aggregate.json"):
        assert (out / name).stat().st_size > 0
    assert list(out.glob("*.png"))


def test_an_under_trained_budget_is_flagged(run_copy, tmp_path):
    """One pass over each subset is flagged as not converged where the converged student was better."""
    summary = run_verify(run_copy, CFG, methods=("random",), fractions=(1.0,), seeds=(0, 1), kd_alphas=(0.0,),
                         budget_modes=("convergence", "fixed_epochs"), epochs=1, max_epochs=200, lr=1e-3,
                         batch_size=16, width=32, threads=1, out=tmp_path / "out", progress=False)
    rows = json.loads((tmp_path / "out/results.json").read_text())
    converged = {r["seed"]: r for r in rows if r["budget_mode"] == "convergence"}
    under = [r for r in rows if r["budget_mode"] == "fixed_epochs"]
    assert all(r["converged"] is False and r["steps"] < converged[r["seed"]]["steps"] for r in under)
    assert summary["students_not_converged"] >= len(under)


def test_verify_cnn_on_images_with_class_balance_and_unseen_test_labels(run_copy, tmp_path):
    test_dir = tmp_path / "test_shards"
    write_shards(test_dir, n_shards=1, per_shard=12, n_labels=6, start=1000)  # labels 4 and 5: never in training
    out = tmp_path / "out"
    summary = run_verify(run_copy, CFG, methods=("proto_hard",), fractions=(0.2, 1.0), seeds=(0,), kd_alphas=(0.0, 1.0),
                         budget_modes=("fixed_steps",), student="cnn", balance="class", test_src=str(test_dir),
                         epochs=2, batch_size=16, width=32, image_size=16, threads=1, out=out, progress=False)
    rows = json.loads((out / "results.json").read_text())
    assert summary["n_test"] == 12 and len(rows) == 4 + 2
    assert summary["unseen_test_labels"] == {"4": 2, "5": 2} or summary["unseen_test_labels"] == {4: 2, 5: 2}
    assert all(r["accuracy"] <= 10 / 12 + 1e-9 for r in rows)  # the 2 + 2 unseen-label samples count as errors
    # class-balanced quotas: all 4 classes survive even at 20 %
    assert all(r["classes_present"] == 4 and r["balance"] == "class" for r in rows)


def test_kd_student_reproduces_the_teacher_soft_labels(scored_run, one_thread):
    """alpha=1 learns the teacher's soft labels (even with the labels scrambled); alpha=0 does not as well."""
    from datapruner.verify.inputs import run_rows
    from datapruner.verify.students import make_student
    from datapruner.verify.train import TrainSpec, predict_logits, soft_label_gap, train_student

    table, emb = run_rows(scored_run)
    x = torch.from_numpy((emb - emb.mean(0)) / (emb.std(0) + 1e-6))
    y = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
    torch.manual_seed(0)
    teacher = make_student("mlp", (x.shape[1],), 4, 32)
    train_student(teacher, x, y, TrainSpec(budget_mode="fixed_epochs", epochs=10, batch_size=16, lr=1e-2), seed=0)
    t_logits = predict_logits(teacher, x)

    def student_gap(alpha, labels):
        torch.manual_seed(1)
        model = make_student("mlp", (x.shape[1],), 4, 32)
        train_student(model, x, labels, TrainSpec(budget_mode="fixed_epochs", epochs=30, batch_size=16, lr=1e-2, alpha=alpha), seed=1, teacher_logits=t_logits)
        return soft_label_gap(model, x, t_logits, 4.0)

    scrambled = y[torch.from_numpy(np.random.default_rng(0).permutation(len(y)))]
    kd, ce, kd_scrambled = student_gap(1.0, y), student_gap(0.0, y), student_gap(1.0, scrambled)
    assert kd < ce / 2
    assert kd_scrambled == pytest.approx(kd, rel=1e-5)  # alpha=1: the loss reads only the teacher


def test_resampled_teachers_give_each_seed_its_own(run_copy, tmp_path):
    out = tmp_path / "out"
    summary = run_verify(run_copy, CFG, methods=("random",), fractions=(0.5, 1.0), seeds=(0, 1), kd_alphas=(0.0, 0.5),
                         budget_modes=("fixed_steps",), resample=("teacher",), epochs=2, batch_size=16, width=16,
                         threads=1, out=out)
    assert set(summary["teachers"]) == {"(1.0, 0)", "(1.0, 1)"}
    assert "KD teacher" in summary["variance_sources"]["resampled_per_seed"]
    kd = {r["seed"]: r["teacher_accuracy"] for r in json.loads((out / "results.json").read_text()) if r["kd"]}
    assert kd == {s: round(summary["teachers"][f"(1.0, {s})"]["accuracy"], 5) for s in (0, 1)}
