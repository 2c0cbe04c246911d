"""The verify grid: one teacher on all training data, then students per method × fraction × seed × KD × budget.

Students that would train on the same subset with the same steps, alpha and seed (e.g. every method
at fraction 1.0, or fixed_steps at fraction 1.0 when it equals fixed_epochs) are trained once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace

import numpy as np

from datapruner.errors import DataprunerError
from datapruner.verify.data import Split
from datapruner.verify.train import TrainSpec, steps_per_epoch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudySpec:
    methods: tuple[str, ...] = ("random", "proto_hard", "proto_easy", "el2n", "dbp")
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    kd_alphas: tuple = (0.0, "auto")  # floats in [0, 1], or "auto": alpha from the keep fraction
    budget_modes: tuple[str, ...] = ("fixed_epochs", "fixed_steps")
    balance: str = "none"  # none | class (per-class quotas)
    student: str = "mlp"  # linear | mlp | cnn
    width: int = 256
    teacher_width: int | None = None  # None: 2 × width
    epochs: int = 20  # fixed_epochs: passes over each subset
    teacher_epochs: int | None = None  # passes of the teacher over all training data; None: epochs
    steps: int | None = None  # fixed_steps budget; None: epochs × steps of one full-data epoch
    batch_size: int = 256
    lr: float = 2e-3
    temperature: float = 4.0
    warmup_frac: float = 0.05
    clip_norm: float = 1.0


def auto_alpha(fraction: float) -> float:
    """KD weight that grows as the kept fraction shrinks (Ben-Baruch et al.): 0.5 at 1.0, 0.9 at ≤ 0.2."""
    return float(np.clip(1.0 - 0.5 * fraction, 0.5, 0.9))


def alpha_label(setting) -> str:
    """"auto", or the fixed alpha as a float string ("0.0" is plain cross-entropy)."""
    return "auto" if setting == "auto" else str(float(setting))


def resolve_alpha(setting, fraction: float) -> float:
    return auto_alpha(fraction) if setting == "auto" else float(setting)


def base_train_spec(spec: StudySpec, budget_mode: str, n_full: int) -> TrainSpec:
    steps = spec.steps or spec.epochs * steps_per_epoch(n_full, spec.batch_size)
    return TrainSpec(budget_mode=budget_mode, epochs=spec.epochs, steps=steps, batch_size=spec.batch_size,
                     lr=spec.lr, warmup_frac=spec.warmup_frac, clip_norm=spec.clip_norm, temperature=spec.temperature)


def input_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training-set mean and std per feature (embeddings) or per channel (images), for standardising inputs."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)[0]
    std = x.std(axis=axes, keepdims=True)[0]
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def _digest(index: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(index, np.int64).tobytes()).hexdigest()


class Trainer:
    """Holds the tensors and the teacher; trains (and memoises) one student per distinct setting."""

    def __init__(self, spec: StudySpec, train: Split, test: Split, seed: int):
        import torch

        self.spec, self.classes = spec, np.unique(train.y)
        remap = {c: i for i, c in enumerate(self.classes)}
        mean, std = input_stats(train.x)
        self.x = torch.from_numpy(np.ascontiguousarray((train.x - mean) / std, np.float32))
        self.y = torch.from_numpy(np.array([remap[c] for c in train.y], np.int64))
        unknown = set(np.unique(test.y)) - set(remap)
        if unknown:
            raise DataprunerError(f"test labels {sorted(unknown)} never occur in the training data")
        self.x_test = torch.from_numpy(np.ascontiguousarray((test.x - mean) / std, np.float32))
        self.y_test = torch.from_numpy(np.array([remap[c] for c in test.y], np.int64))
        self.memo: dict[tuple, dict] = {}
        self.teacher_info = self._train_teacher(seed)

    def _new_model(self, width: int, seed: int):
        import torch

        from datapruner.verify.students import make_student

        torch.manual_seed(seed)
        return make_student(self.spec.student, tuple(self.x.shape[1:]), len(self.classes), width)

    def _train_teacher(self, seed: int) -> dict:
        from datapruner.verify.train import accuracy, predict_logits, train_student

        start = time.time()
        spec = replace(base_train_spec(self.spec, "fixed_epochs", len(self.x)),
                       epochs=self.spec.teacher_epochs or self.spec.epochs)
        model = self._new_model(self.spec.teacher_width or 2 * self.spec.width, seed)
        info = train_student(model, self.x, self.y, spec, seed)
        self.teacher = model
        self.teacher_logits = predict_logits(model, self.x)
        acc = accuracy(model, self.x_test, self.y_test)
        log.info("teacher: accuracy %.4f on %d test samples (%.1fs)", acc, len(self.y_test), time.time() - start)
        return {"accuracy": acc, "steps": info["steps"], "seconds": round(time.time() - start, 2)}

    def student(self, index: np.ndarray, spec: TrainSpec, seed: int) -> dict:
        """Train on rows `index` under `spec` (memoised); returns accuracy, steps, samples_seen, seconds."""
        from datapruner.verify.train import accuracy, total_steps, train_student

        key = (_digest(index), total_steps(spec, len(index)), spec.alpha, seed)
        if key not in self.memo:
            start = time.time()
            model = self._new_model(self.spec.width, seed)
            idx = self._tensor_index(index)
            logits = self.teacher_logits[idx] if spec.alpha > 0 else None
            info = train_student(model, self.x[idx], self.y[idx], spec, seed, logits)
            info["accuracy"] = accuracy(model, self.x_test, self.y_test)
            info["seconds"] = round(time.time() - start, 2)
            self.memo[key] = info
        return self.memo[key]

    @staticmethod
    def _tensor_index(index: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(index, np.int64))


def study_row(spec: StudySpec, trainer: Trainer, budget_mode: str, method: str, fraction: float, seed: int,
              alpha_setting, index: np.ndarray) -> dict:
    """Train (or reuse) one student and describe it as one results row."""
    from datapruner.verify.subsets import class_shares

    alpha = resolve_alpha(alpha_setting, fraction)
    train_spec = replace(base_train_spec(spec, budget_mode, len(trainer.x)), alpha=alpha)
    info = trainer.student(index, train_spec, seed)
    n_full = len(trainer.x)
    smallest, present = class_shares(trainer.y.numpy()[index], np.arange(len(trainer.classes)))
    passes = info["samples_seen"] / n_full
    return {
        "budget_mode": budget_mode, "method": method, "balance": spec.balance, "fraction": fraction,
        "kept": int(len(index)), "kd": alpha > 0, "alpha_setting": alpha_label(alpha_setting), "alpha": round(alpha, 4),
        "temperature": spec.temperature if alpha > 0 else None, "seed": seed,
        "accuracy": round(info["accuracy"], 5), "error": round(1.0 - info["accuracy"], 5),
        "steps": info["steps"], "samples_seen": info["samples_seen"],
        "epochs_on_subset": round(info["samples_seen"] / max(1, len(index)), 3),
        "full_data_passes": round(passes, 3), "regime": "data-limited" if passes >= 1.0 else "compute-limited",
        "smallest_class_share": round(smallest, 5), "classes_present": present,
        "student": spec.student, "teacher_accuracy": round(trainer.teacher_info["accuracy"], 5),
        "train_seconds": info["seconds"],
    }


def run_study(spec: StudySpec, trainer: Trainer, subsets: dict, progress: bool = True) -> list[dict]:
    """All rows; `subsets[(method, fraction, seed)]` holds the kept row indices of the training data."""
    rows = []
    grid = [(b, m, f, s, a) for b in spec.budget_modes for m in spec.methods
            for f in spec.fractions for s in spec.seeds for a in spec.kd_alphas]
    start = time.time()
    for i, (budget, method, fraction, seed, alpha) in enumerate(grid, 1):
        row = study_row(spec, trainer, budget, method, fraction, seed, alpha, subsets[(method, fraction, seed)])
        rows.append(row)
        if progress:
            log.info("[%d/%d %.0fs] %s %s f=%.2f seed=%d alpha=%s: acc %.4f", i, len(grid), time.time() - start,
                     budget, method, fraction, seed, row["alpha_setting"], row["accuracy"])
    return rows
