"""The training loop pieces: KD loss, schedule, budgets, batches."""

import math

import pytest
import torch
import torch.nn.functional as F

from datapruner.verify.students import make_student
from datapruner.verify.train import (TrainSpec, batch_indices, kd_loss, lr_factor, total_steps, train_student)


def test_kd_loss_is_ce_at_alpha_zero_and_zero_kl_when_student_equals_teacher():
    torch.manual_seed(0)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(kd_loss(logits, y, torch.randn(8, 5), 0.0, 4.0), F.cross_entropy(logits, y))
    assert float(kd_loss(logits, y, logits.clone(), 1.0, 4.0)) == pytest.approx(0.0, abs=1e-6)
    mixed = kd_loss(logits, y, torch.randn(8, 5), 0.5, 2.0)
    assert mixed > 0.5 * F.cross_entropy(logits, y)


def test_warmup_then_cosine_decay():
    total = 100
    factors = [lr_factor(s, total, 0.1) for s in range(total)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] < 0.01


def test_budgets_and_batches():
    assert total_steps(TrainSpec(budget_mode="fixed_epochs", epochs=3, batch_size=10), 25) == 9
    assert total_steps(TrainSpec(budget_mode="convergence", max_epochs=4, batch_size=10), 25) == 12
    assert total_steps(TrainSpec(budget_mode="fixed_steps", steps=50, batch_size=10), 25) == 50
    with pytest.raises(ValueError):
        TrainSpec(budget_mode="forever")
    batches = list(batch_indices(25, 10, 7, torch.Generator().manual_seed(0)))
    assert len(batches) == 7 and [len(b) for b in batches[:3]] == [10, 10, 5]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(25))


def test_training_is_seeded_and_learns(one_thread):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] > 0).long()
    spec = TrainSpec(budget_mode="fixed_epochs", epochs=10, batch_size=32, lr=1e-2)
    weights = []
    for _ in range(2):
        torch.manual_seed(1)
        model = make_student("mlp", (6,), 2, 16)
        info = train_student(model, x, y, spec, seed=3)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert info["final_loss"] < math.log(2) / 2 and info["steps"] == 70


def test_cnn_student_shapes():
    model = make_student("cnn", (3, 16, 16), 4, 64)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(ValueError):
        make_student("cnn", (8,), 4)


def _blobs(n: int, seed: int, noise: float = 0.8):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return centres[y] + noise * torch.randn(n, 2, generator=g), y


def test_an_under_trained_budget_is_flagged_as_not_converged(one_thread):
    """The loop's own evidence: the validation loss was still falling when the budget ran out.
    (verify also compares a fixed budget with the converged student: tests/verify/test_verify.py.)"""
    x, y = _blobs(600, 0)
    val = _blobs(300, 1)
    for spec in (TrainSpec(budget_mode="fixed_steps", steps=10, batch_size=64, lr=3e-3),
                 TrainSpec(budget_mode="convergence", max_epochs=1, batch_size=64, lr=1e-3, eval_min_steps=2)):
        torch.manual_seed(0)
        info = train_student(make_student("mlp", (2,), 3, 16), x, y, spec, seed=0, val=val)
        assert info["converged"] is False, spec.budget_mode


def test_the_convergence_budget_stops_at_the_plateau_and_keeps_the_best_weights(one_thread):
    x, y = _blobs(600, 0)
    val = _blobs(300, 1)
    spec = TrainSpec(budget_mode="convergence", max_epochs=400, batch_size=64, lr=1e-2, patience=3, lr_drops=1)
    torch.manual_seed(0)
    model = make_student("mlp", (2,), 3, 16)
    info = train_student(model, x, y, spec, seed=0, val=val)
    assert info["converged"] is True and info["steps"] < total_steps(spec, len(x)) / 4
    assert info["val_accuracy"] > 0.85
    long = TrainSpec(budget_mode="fixed_epochs", epochs=60, batch_size=64, lr=1e-2)
    torch.manual_seed(0)
    assert train_student(make_student("mlp", (2,), 3, 16), x, y, long, seed=0, val=val)["converged"] is True
    with pytest.raises(ValueError, match="validation"):
        train_student(model, x, y, spec, seed=0)
