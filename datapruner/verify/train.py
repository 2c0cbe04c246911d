"""Training one student: CE or KD loss, warm-up + cosine schedule, gradient clipping, a step budget.

KD loss (Hinton et al.; Ben-Baruch et al. for pruning): (1 - alpha) * CE(y) + alpha * T^2 * KL(p_t^T || p_s^T).
Every student gets the same warm-up and clipping, with or without KD (DESIGN section 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from datapruner.errors import DataprunerError

BUDGET_MODES = ("fixed_epochs", "fixed_steps")


@dataclass(frozen=True)
class TrainSpec:
    budget_mode: str = "fixed_epochs"  # fixed_epochs: `epochs` passes over the subset; fixed_steps: `steps`
    epochs: int = 20
    steps: int | None = None  # fixed_steps only; the study sets it from the full data when None
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05  # linear warm-up over this share of the steps
    clip_norm: float = 1.0  # gradient clipping (max global L2 norm)
    alpha: float = 0.0  # KD weight; 0 is plain cross-entropy
    temperature: float = 4.0

    def __post_init__(self):
        if self.budget_mode not in BUDGET_MODES:
            raise DataprunerError(f"unknown budget mode {self.budget_mode!r}: choose one of {', '.join(BUDGET_MODES)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise DataprunerError(f"KD alpha must lie in [0, 1], got {self.alpha}")


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def total_steps(spec: TrainSpec, n_subset: int) -> int:
    """Optimizer steps a student trained on `n_subset` samples gets under `spec`."""
    if spec.budget_mode == "fixed_steps":
        if spec.steps is None:
            raise DataprunerError("fixed_steps needs spec.steps")
        return int(spec.steps)
    return spec.epochs * steps_per_epoch(n_subset, spec.batch_size)


def kd_loss(student_logits, targets, teacher_logits, alpha: float, temperature: float):
    """(1 - alpha) * CE + alpha * T^2 * KL(teacher^T || student^T), averaged over the batch."""
    import torch.nn.functional as F

    ce = F.cross_entropy(student_logits, targets)
    if alpha == 0.0 or teacher_logits is None:
        return ce
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * t * t * kl


def lr_factor(step: int, total: int, warmup_frac: float) -> float:
    """Linear warm-up, then cosine decay to zero."""
    warmup = max(1, int(round(warmup_frac * total)))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_indices(n: int, batch_size: int, steps: int, generator):
    """`steps` batches of indices: epoch-wise random permutations, the last partial batch kept."""
    import torch

    batch_size = min(batch_size, n)
    done = 0
    while done < steps:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield perm[start:start + batch_size]
            done += 1


def train_student(model, x, y, spec: TrainSpec, seed: int, teacher_logits=None) -> dict:
    """Train `model` in place on tensors x, y (and the teacher's logits on the same rows for KD).

    Returns {"steps", "samples_seen", "final_loss"}.
    """
    import torch

    if len(x) == 0:
        raise DataprunerError("cannot train a student on an empty subset")
    if spec.alpha > 0 and teacher_logits is None:
        raise DataprunerError("KD (alpha > 0) needs the teacher's logits")
    steps = total_steps(spec, len(x))
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, spec.warmup_frac))
    model.train()
    seen, loss_value = 0, float("nan")
    for idx in batch_indices(len(x), spec.batch_size, steps, generator):
        t_logits = teacher_logits[idx] if spec.alpha > 0 else None
        loss = kd_loss(model(x[idx]), y[idx], t_logits, spec.alpha, spec.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.clip_norm)
        opt.step()
        sched.step()
        seen += len(idx)
        loss_value = float(loss.detach())
    model.eval()
    return {"steps": steps, "samples_seen": seen, "final_loss": loss_value}


def predict_logits(model, x, batch_size: int = 4096):
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model, x, y) -> float:
    return float((predict_logits(model, x).argmax(1) == y).float().mean())


def soft_label_gap(model, x, teacher_logits, temperature: float) -> float:
    """Mean KL(teacher^T || student^T) over x: how well the student reproduces the teacher's soft labels."""
    import torch.nn.functional as F

    s = predict_logits(model, x)
    return float(F.kl_div(F.log_softmax(s / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                          reduction="batchmean", log_target=True))
