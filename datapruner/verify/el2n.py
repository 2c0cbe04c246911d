"""EL2N as Paul et al. 2021 define it: the student architecture itself, trained on the full training pool and
stopped early, scored by ||softmax(f(x)) − onehot(y)||₂, averaged over several initialisations.

Each initialisation follows the study's own fixed-epochs schedule (warm-up + cosine over `epochs` passes) and is
snapshotted after `at_epoch` passes, so "early" means early in a normal run. The inits are seeded from the study
seed, so the score's randomness is resampled per seed like every other score.
"""

from __future__ import annotations

import numpy as np

from datapruner.errors import DataprunerError


def student_el2n(x, y, make_model, spec, at_epoch: int, inits: int, seed: int) -> np.ndarray:
    """(n,) float32 EL2N of the rows (x, y tensors; y in 0..C-1), the mean over `inits` early-stopped students.

    make_model(init_seed) returns a freshly initialised student; spec is the fixed_epochs TrainSpec it follows.
    """
    import torch

    from datapruner.verify.train import predict_logits, steps_per_epoch, train_student

    if inits < 1 or at_epoch < 1:
        raise DataprunerError(f"el2n needs at least one initialisation and one epoch, got {inits} and {at_epoch}")
    total = np.zeros(len(y), np.float64)
    for i in range(inits):
        init_seed = 1000 * seed + i
        model = make_model(init_seed)
        train_student(model, x, y, spec, init_seed, stop_after=at_epoch * steps_per_epoch(len(x), spec.batch_size))
        probs = torch.softmax(predict_logits(model, x).float(), dim=1)
        onehot = torch.nn.functional.one_hot(y, probs.shape[1]).float()
        total += torch.linalg.vector_norm(probs - onehot, dim=1).numpy()
    return (total / inits).astype(np.float32)
