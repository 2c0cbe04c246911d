"""The student's own EL2N (Paul et al.): mislabelled rows score high, the score is seeded, inits average."""

import numpy as np
import torch

from datapruner.verify.el2n import student_el2n
from datapruner.verify.students import make_student
from datapruner.verify.train import TrainSpec


def test_mislabelled_samples_get_the_highest_el2n(one_thread):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (900,), generator=g)
    x = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])[y] + 0.5 * torch.randn(900, 2, generator=g)
    flipped = np.zeros(900, bool)
    flipped[:90] = True
    noisy = y.clone()
    noisy[:90] = (y[:90] + 1) % 3
    spec = TrainSpec(budget_mode="fixed_epochs", epochs=20, batch_size=64, lr=1e-2)

    def model(seed):
        torch.manual_seed(seed)
        return make_student("mlp", (2,), 3, 16)

    scores = student_el2n(x, noisy, model, spec, at_epoch=3, inits=5, seed=0)
    assert scores.shape == (900,) and scores.dtype == np.float32
    assert scores[flipped].mean() > 2 * scores[~flipped].mean()
    top = np.argsort(-scores)[:90]
    assert flipped[top].mean() > 0.8
    assert np.array_equal(scores, student_el2n(x, noisy, model, spec, at_epoch=3, inits=5, seed=0))
    assert not np.array_equal(scores, student_el2n(x, noisy, model, spec, at_epoch=3, inits=5, seed=1))
