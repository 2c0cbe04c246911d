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
    spec = TrainSpec(epochs=10, batch_size=32, lr=1e-2)
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
