"""Training one student: CE or KD loss, a step budget, gradient clipping, and a convergence check on a validation split.

KD loss (Hinton et al.; Ben-Baruch et al. for pruning): (1 - alpha) * CE(y) + alpha * T^2 * KL(p_t^T || p_s^T).
Every student gets the same warm-up and clipping, with or without KD (docs/verify.md).

Budgets:
- convergence: linear warm-up over one evaluation interval, then a constant learning rate that drops ×0.1 each
  time the validation loss has not improved (by `min_delta`, relative) for `patience` evaluations; training stops
  at the plateau after the last drop ("converged"), or at `max_epochs` passes ("not converged"). The weights of
  the best validation loss are the ones tested.
- fixed_steps (compute-matched) and fixed_epochs: warm-up + cosine decay over the budget, the final weights tested.
  Converged means the validation loss stopped improving: the best loss of the budget's last fifth is not lower
  than the best before it by more than `min_delta` (relative). A budget that ends while the loss still falls is
  flagged, so an under-trained study cannot pass for a converged one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from datapruner.errors import DataprunerError

BUDGET_MODES = ("convergence", "fixed_steps", "fixed_epochs")
CHECKPOINTS = 10  # validation evaluations over a fixed budget


@dataclass(frozen=True)
class TrainSpec:
    budget_mode: str = "convergence"
    epochs: int = 20  # fixed_epochs: passes over the subset
    steps: int | None = None  # fixed_steps only
    max_epochs: int = 100  # convergence: the cap, in passes over the subset
    patience: int = 4  # convergence: evaluations without improvement before a drop / the stop
    lr_drops: int = 1  # convergence: learning-rate drops (×0.1) before the final plateau
    min_delta: float = 2e-3  # a relative improvement of the validation loss below this is none
    eval_min_steps: int = 25  # convergence: at least this many steps between evaluations
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05  # fixed budgets: linear warm-up over this share of the steps
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
    """Optimizer steps a student on `n_subset` samples gets under `spec` (convergence: at most)."""
    if spec.budget_mode == "fixed_steps":
        if spec.steps is None:
            raise DataprunerError("fixed_steps needs spec.steps")
        return int(spec.steps)
    epochs = spec.epochs if spec.budget_mode == "fixed_epochs" else spec.max_epochs
    return epochs * steps_per_epoch(n_subset, spec.batch_size)


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


def validation_loss(model, val) -> tuple[float, float]:
    """(cross-entropy, accuracy) of `model` on the validation tensors (x, y)."""
    import torch.nn.functional as F

    logits = predict_logits(model, val[0])
    model.train()
    return float(F.cross_entropy(logits, val[1])), float((logits.argmax(1) == val[1]).float().mean())


class _Steps:
    """One optimizer step at a time over seeded batches, with the loss of the spec."""

    def __init__(self, model, x, y, spec: TrainSpec, seed: int, teacher_logits, max_steps: int):
        import torch

        self.model, self.x, self.y, self.spec, self.teacher_logits = model, x, y, spec, teacher_logits
        self.opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.batches = batch_indices(len(x), spec.batch_size, max_steps, torch.Generator().manual_seed(seed))
        self.done, self.seen, self.loss = 0, 0, float("nan")

    def step(self, lr: float) -> None:
        import torch

        idx = next(self.batches)
        for group in self.opt.param_groups:
            group["lr"] = lr
        t_logits = self.teacher_logits[idx] if self.spec.alpha > 0 else None
        loss = kd_loss(self.model(self.x[idx]), self.y[idx], t_logits, self.spec.alpha, self.spec.temperature)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.clip_norm)
        self.opt.step()
        self.done, self.seen, self.loss = self.done + 1, self.seen + len(idx), float(loss.detach())


def train_student(model, x, y, spec: TrainSpec, seed: int, teacher_logits=None, val=None,
                  stop_after: int | None = None) -> dict:
    """Train `model` in place on tensors x, y (and the teacher's logits on the same rows for KD).

    `val` = (x_val, y_val) tensors: needed by the convergence budget, and by the converged flag of the others.
    `stop_after` (fixed budgets): stop after this many steps of the budget's schedule (an early snapshot).
    Returns steps, samples_seen, final_loss, converged (None without val), val_loss, val_accuracy.
    """
    if len(x) == 0:
        raise DataprunerError("cannot train a student on an empty subset")
    if spec.alpha > 0 and teacher_logits is None:
        raise DataprunerError("KD (alpha > 0) needs the teacher's logits")
    if spec.budget_mode == "convergence" and val is None:
        raise DataprunerError("the convergence budget needs a validation split")
    model.train()
    run = _Steps(model, x, y, spec, seed, teacher_logits, total_steps(spec, len(x)))
    if spec.budget_mode == "convergence":
        result = _until_plateau(run, len(x), val)
    else:
        result = _fixed(run, len(x), val, stop_after)
    model.eval()
    return {"steps": run.done, "samples_seen": run.seen, "final_loss": run.loss, **result}


def _fixed(run: _Steps, n: int, val, stop_after: int | None = None) -> dict:
    spec = run.spec
    total = total_steps(spec, n)
    marks = {max(1, round(total * i / CHECKPOINTS)) for i in range(1, CHECKPOINTS + 1)} if val is not None else set()
    curve = []
    for step in range(total if stop_after is None else min(total, stop_after)):
        run.step(spec.lr * lr_factor(step, total, spec.warmup_frac))
        if run.done in marks:
            curve.append((run.done, *validation_loss(run.model, val)))
    if not curve:
        return {"converged": None, "val_loss": None, "val_accuracy": None}
    cut = 0.8 * total
    before = [loss for s, loss, _ in curve if s <= cut]
    after = [loss for s, loss, _ in curve if s > cut]
    still_falling = bool(before and after and min(after) < min(before) * (1.0 - spec.min_delta))
    return {"converged": not still_falling, "val_loss": curve[-1][1], "val_accuracy": curve[-1][2]}


def _until_plateau(run: _Steps, n: int, val) -> dict:
    spec = run.spec
    interval = max(steps_per_epoch(n, spec.batch_size), spec.eval_min_steps)
    max_steps = total_steps(spec, n)
    best, best_state, bad, drops, converged = math.inf, None, 0, 0, False
    level = spec.lr
    while run.done < max_steps:
        for _ in range(min(interval, max_steps - run.done)):
            warm = min(1.0, (run.done + 1) / interval)
            run.step(level * warm)
        loss, _ = validation_loss(run.model, val)
        if loss < best * (1.0 - spec.min_delta):
            best, best_state, bad = loss, _state(run.model), 0
            continue
        bad += 1
        if bad >= spec.patience:
            if drops == spec.lr_drops:
                converged = True
                break
            drops, bad, level = drops + 1, 0, level * 0.1
    if best_state is not None:
        run.model.load_state_dict(best_state)
    loss, acc = validation_loss(run.model, val)
    return {"converged": converged, "val_loss": loss, "val_accuracy": acc}


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


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
