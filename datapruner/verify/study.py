"""The verify grid: per pool and seed a fresh scoring, then students per budget × method × fraction × KD setting.

Rows follow verify/results.py's schema. Students that would train on the same subset with the same budget, alpha
and seed (every method at fraction 1.0, for one) are trained once. KD students distil the teacher of their pool.
With several fixed KD weights, an extra row per (budget, pool, method, fraction, seed) takes the weight whose
student scored best on the validation split ("val", as Ben-Baruch et al. choose it): the test set never chooses.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from datapruner.verify.subsets import label_distance
from datapruner.verify.trainer import Job, Trainer
from datapruner.verify.train import TrainSpec, steps_per_epoch

log = logging.getLogger(__name__)
VAL_ALPHA = "val"


@dataclass(frozen=True)
class StudySpec:
    methods: tuple[str, ...] = ("random", "proto_hard", "proto_easy", "el2n", "el2n_offset", "el2n_probe", "dbp")
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    kd_alphas: tuple = (0.0, 0.5, 0.9)  # floats in [0, 1], or "auto": alpha from the keep fraction
    budget_modes: tuple[str, ...] = ("convergence", "fixed_steps")
    pools: tuple[float, ...] = (1.0,)  # shares of the training data pruned from (the abundance axis)
    balance: str = "none"  # none | class (per-class quotas)
    student: str = "mlp"  # linear | mlp | cnn
    width: int = 256
    teacher_width: int | None = None  # None: 2 × width
    epochs: int = 20  # fixed_epochs: passes over each subset; fixed_steps default and el2n schedule: passes over the pool
    steps: int | None = None  # fixed_steps budget; None: `epochs` passes over the pool
    max_epochs: int = 100  # convergence: the cap
    patience: int = 4
    lr_drops: int = 1
    batch_size: int = 256
    lr: float = 2e-3
    temperature: float = 4.0
    warmup_frac: float = 0.05
    clip_norm: float = 1.0
    val_fraction: float = 0.1  # carved from the training data for early stopping and choosing alpha
    el2n_epoch: int = 2  # EL2N: the student snapshotted after this many passes over the pool ...
    el2n_inits: int = 5  # ... averaged over this many initialisations
    workers: int | None = None  # student processes (None: the usable cores)
    resample: tuple[str, ...] = ()  # "teacher": a teacher per seed (its own init and batch order), not one per pool


RESAMPLABLE = ("teacher",)


def variance_sources(spec: StudySpec) -> dict[str, list[str]]:
    """What the seeds of a study resample, and what every seed shares (the study reports both)."""
    covered = ["student initialisation", "batch order", "scoring (k-means, EL2N inits, random pruning)"]
    fixed = ["train / validation / test split", "pool draws", "embedding the scores are computed in"]
    (covered if "teacher" in spec.resample else fixed).append("KD teacher")
    return {"resampled_per_seed": covered, "fixed_across_seeds": fixed}


def teacher_key(spec: StudySpec, pool: float, seed: int):
    """The teacher a KD student of (pool, seed) distils: the pool's, or its own seed's when resampled."""
    return (pool, seed) if "teacher" in spec.resample else pool


def auto_alpha(fraction: float) -> float:
    """KD weight that grows as the kept fraction shrinks (Ben-Baruch et al.): 0.5 at 1.0, 0.9 at ≤ 0.2."""
    return float(np.clip(1.0 - 0.5 * fraction, 0.5, 0.9))


def alpha_label(setting) -> str:
    """"auto", or the fixed alpha as a float string ("0.0" is plain cross-entropy)."""
    return "auto" if setting == "auto" else str(float(setting))


def resolve_alpha(setting, fraction: float) -> float:
    return auto_alpha(fraction) if setting == "auto" else float(setting)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def train_spec(spec: StudySpec, budget_mode: str, pool_size: int, alpha: float = 0.0) -> TrainSpec:
    steps = spec.steps or spec.epochs * steps_per_epoch(pool_size, spec.batch_size)
    return TrainSpec(budget_mode=budget_mode, epochs=spec.epochs, steps=steps, max_epochs=spec.max_epochs,
                     patience=spec.patience, lr_drops=spec.lr_drops, batch_size=spec.batch_size, lr=spec.lr,
                     warmup_frac=spec.warmup_frac, clip_norm=spec.clip_norm, alpha=alpha, temperature=spec.temperature)


def grid(spec: StudySpec):
    for pool in spec.pools:
        for budget in spec.budget_modes:
            for method in spec.methods:
                for fraction in spec.fractions:
                    for seed in spec.seeds:
                        for alpha in spec.kd_alphas:
                            yield pool, budget, method, fraction, seed, alpha


def run_study(spec: StudySpec, trainer: Trainer, pools: dict[float, np.ndarray], subsets: dict,
              progress: bool = True) -> list[dict]:
    """All rows; pools[share] are training-row indices, subsets[(pool, method, fraction, seed)] kept row indices."""
    cells = list(grid(spec))
    if any(resolve_alpha(c[5], c[3]) > 0 for c in cells):
        for pool, index in pools.items():
            teacher = train_spec(spec, "convergence", len(index))
            for seed in (spec.seeds if "teacher" in spec.resample else (min(spec.seeds),)):
                trainer.train_teacher(teacher_key(spec, pool, seed), index, teacher, seed,
                                      spec.teacher_width or 2 * spec.width)
    jobs = {cell: _job(spec, pools, subsets, *cell) for cell in cells}
    start = time.time()
    trainer.train_all(list(jobs.values()), spec.workers or usable_cores(), progress)
    log.info("verify: %d rows from %d students (%.0fs)", len(cells), len(trainer.memo), time.time() - start)
    labels = trainer.y.numpy()
    trainer.study_keys = list(dict.fromkeys(job.key() for job in jobs.values()))
    student_of = {key: i for i, key in enumerate(trainer.study_keys)}
    rows = flag_under_trained([_row(spec, trainer, pools, labels, cell, job) | {"student_id": student_of[job.key()]}
                               for cell, job in jobs.items()])
    return rows + chosen_alpha_rows(rows)


def _job(spec: StudySpec, pools, subsets, pool, budget, method, fraction, seed, alpha_setting) -> Job:
    alpha = resolve_alpha(alpha_setting, fraction)
    return Job(subsets[(pool, method, fraction, seed)], train_spec(spec, budget, len(pools[pool]), alpha), seed,
               teacher_key(spec, pool, seed))


def _row(spec: StudySpec, trainer: Trainer, pools, labels, cell, job: Job) -> dict:
    pool, budget, method, fraction, seed, alpha_setting = cell
    info = trainer.memo[job.key()]
    tv, present = label_distance(labels[job.index], labels[pools[pool]])
    kd = job.spec.alpha > 0
    return {
        "budget_mode": budget, "pool": pool, "pool_size": int(len(pools[pool])), "method": method,
        "balance": spec.balance, "fraction": fraction, "kept": int(len(job.index)), "kd": kd,
        "alpha_setting": alpha_label(alpha_setting), "alpha": round(job.spec.alpha, 4),
        "temperature": spec.temperature if kd else None, "seed": seed,
        "accuracy": round(info["accuracy"], 5), "error": round(1.0 - info["accuracy"], 5),
        "val_accuracy": _round(info["val_accuracy"]), "val_loss": _round(info["val_loss"]),
        "converged": info["converged"], "steps": info["steps"], "samples_seen": info["samples_seen"],
        "epochs_on_subset": round(info["samples_seen"] / max(1, len(job.index)), 3),
        "full_data_passes": round(info["samples_seen"] / len(pools[pool]), 3),
        "label_tv": round(tv, 5), "classes_present": present, "student": spec.student,
        "teacher_accuracy": round(trainer.teachers[job.pool]["accuracy"], 5) if kd else None,
        "train_seconds": info["seconds"],
    }


UNDER_TRAINED_GAP = 0.005  # validation accuracy below the converged student's by more than this


def flag_under_trained(rows: list[dict]) -> list[dict]:
    """A fixed-budget student that took fewer steps than the same student trained to convergence and is worse
    on the validation split by more than UNDER_TRAINED_GAP did not converge: more training would have helped.
    (The loop's own flag covers budgets that end while the validation loss still falls.)"""
    same = ("pool", "method", "fraction", "seed", "alpha_setting")
    converged = {tuple(r[k] for k in same): r for r in rows if r["budget_mode"] == "convergence" and r["converged"]}
    for row in rows:
        ref = converged.get(tuple(row[k] for k in same))
        if row["budget_mode"] == "convergence" or ref is None or row["val_accuracy"] is None:
            continue
        if row["steps"] < ref["steps"] and row["val_accuracy"] < ref["val_accuracy"] - UNDER_TRAINED_GAP:
            row["converged"] = False
    return rows


def chosen_alpha_rows(rows: list[dict]) -> list[dict]:
    """Per (budget, pool, method, fraction, seed): the fixed-alpha KD row with the best validation accuracy
    (ties: the smaller alpha), relabelled "val"; none where fewer than one fixed alpha > 0 was trained."""
    best: dict[tuple, dict] = {}
    for row in rows:
        if not row["kd"] or row["alpha_setting"] == "auto":
            continue
        key = tuple(row[k] for k in ("budget_mode", "pool", "method", "fraction", "seed"))
        held = best.get(key)
        if held is None or (row["val_accuracy"], -row["alpha"]) > (held["val_accuracy"], -held["alpha"]):
            best[key] = row
    return [{**row, "alpha_setting": VAL_ALPHA} for row in best.values()]


def _round(value):
    return None if value is None else round(float(value), 5)
