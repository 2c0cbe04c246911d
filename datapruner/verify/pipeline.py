"""`datapruner verify`: train students on pruned subsets (with and without KD) and check the scaling claims."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.verify.data import Split
from datapruner.verify.study import StudySpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifySpec(StudySpec):
    """Everything `verify` takes beside the run's Config: the study grid (StudySpec) and where data comes from.

    methods       subset of random, proto_hard, proto_easy, el2n (the student's own EL2N), el2n_offset (the same,
                  hardest 10 % dropped first), el2n_probe (the pipeline's probe-on-embeddings el2n), dbp.
    kd_alphas     KD weights: floats in [0, 1] (0.0 = plain CE) and/or "auto" (alpha from the fraction:
                  clip(1 - f/2, 0.5, 0.9)). With fixed weights > 0, "val" rows take the weight the validation
                  split prefers. KD loss: (1-a)·CE + a·T²·KL(teacher^T || student^T), T=`temperature`.
    budget_modes  convergence (early stopping on the validation split, see verify/train.py), fixed_steps (`steps`,
                  default `epochs` passes over the pool: compute-matched) and/or fixed_epochs (`epochs` passes).
    pools         shares of the training data that pruning starts from (nested, stratified): the abundance axis.
    student       linear | mlp (on the run's embeddings) | cnn (on images decoded from the shards at
                  `image_size`² with `channels` channels).
    test_src      held-out data: shards, a run dir or a precomputed embeddings dir (with labels). When None,
                  a stratified `test_fraction` of the run is held out (seed cfg.seed). The validation split
                  (`val_fraction`) comes from the rest; pruning, scores and students see neither.
    holdout_group a metadata column (e.g. a json field): rows sharing its value stay on one side of every split.
    src           embed these shards into RUN first.
    resample      what each seed draws afresh beyond the student's init, batch order and scoring: "teacher" (a
                  KD teacher per seed). summary.json's variance_sources says what the seeds cover.
    threads       torch CPU threads of the scoring and the teachers (default: all cores); students run in
                  `workers` processes of one thread. out: where the results go (default RUN/verify).
    """

    test_src: str | None = None
    test_fraction: float = 0.2
    holdout_group: str | None = None
    src: str | None = None
    image_size: int = 32
    channels: int = 3
    threads: int | None = None
    out: str | Path | None = None
    task: str = "classification"  # or "clip": CLIPs trained on the kept image-caption pairs (verify/clip_study.py)
    clip_model: str = "datapruner-tiny"  # clip: the open_clip config trained from scratch


def run_verify(run: str | Path, cfg: Config, spec: VerifySpec, progress: bool = True) -> dict:
    """Split the run, score each pool per seed, train the teachers and students; write RUN/verify/.

    Writes RUN/verify/{results.json, results.csv, aggregate.json, power_law.json, comparisons.json, claims.json,
    summary.json, summary.md, *.png} and returns the summary dict. Reached through datapruner.api.verify.
    """
    import torch

    if spec.task not in TASKS:
        raise DataprunerError(f"verify --task {spec.task}: choose one of {', '.join(TASKS)}")
    if spec.task == "clip":
        return _clip(run, cfg, spec, progress)
    check_spec(spec)
    spec = replace(spec, fractions=tuple(sorted(float(f) for f in spec.fractions)),
                   pools=tuple(sorted(float(p) for p in spec.pools)),
                   kd_alphas=tuple("auto" if a == "auto" else float(a) for a in spec.kd_alphas))
    threads_before = torch.get_num_threads()
    torch.set_num_threads(spec.threads or os.cpu_count() or 1)
    try:
        if spec.src is not None:
            from datapruner.session import run_command

            run_command("embed", run, cfg, spec.src, progress)
        summary = _study(run, cfg, spec, progress)
    finally:
        torch.set_num_threads(threads_before)
    return summary


TASKS = ("classification", "clip")


def default_methods(task: str) -> str:
    """The methods a task compares when --methods is not given (a comma list)."""
    from datapruner.verify.clip_methods import DEFAULT_METHODS

    return ",".join(DEFAULT_METHODS if task == "clip" else VerifySpec.methods)


def _clip(run, cfg: Config, spec: VerifySpec, progress: bool) -> dict:
    from datapruner.verify.clip_study import run_clip_verify

    spec = replace(spec, fractions=tuple(sorted({*(float(f) for f in spec.fractions), 1.0})))
    if spec.src is not None:
        from datapruner.session import run_command

        run_command("embed", run, cfg.replace(embed_text=True), spec.src, progress)
    return run_clip_verify(run, cfg, spec, progress)


def check_spec(spec: VerifySpec) -> None:
    """Refuse a grid that cannot run before anything is read or trained."""
    from datapruner.verify.students import STUDENT_KINDS
    from datapruner.verify.subsets import BALANCES, METHODS
    from datapruner.verify.train import BUDGET_MODES

    def within(name, values, low, high, low_open=True):
        bad = [v for v in values if not (low < v <= high if low_open else low <= v <= high)]
        if bad or not values:
            raise DataprunerError(f"verify {name} must be {'(' if low_open else '['}{low}, {high}], got {list(values)}")

    for name, values, known in (("methods", spec.methods, METHODS), ("budget_modes", spec.budget_modes, BUDGET_MODES)):
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            raise DataprunerError(f"unknown verify {name} {unknown or '(none given)'}: choose from {', '.join(known)}")
    if spec.student not in STUDENT_KINDS or spec.balance not in BALANCES:
        raise DataprunerError(f"verify student must be one of {', '.join(STUDENT_KINDS)} and balance one of "
                              f"{', '.join(BALANCES)}, got {spec.student!r} and {spec.balance!r}")
    within("fractions", [float(f) for f in spec.fractions], 0.0, 1.0)
    within("pools", [float(p) for p in spec.pools], 0.0, 1.0)
    within("KD alphas", [float(a) for a in spec.kd_alphas if a != "auto"] or [0.0], 0.0, 1.0, low_open=False)
    within("val_fraction", [spec.val_fraction], 0.0, 0.5)
    from datapruner.verify.study import RESAMPLABLE

    if any(r not in RESAMPLABLE for r in spec.resample):
        raise DataprunerError(f"verify resample takes {', '.join(RESAMPLABLE)}, got {list(spec.resample)}")
    if not spec.seeds or min(spec.el2n_epoch, spec.el2n_inits, spec.max_epochs, spec.patience) < 1:
        raise DataprunerError("verify needs at least one seed, and el2n_epoch, el2n_inits, max_epochs, patience >= 1")


def _study(run, cfg: Config, spec: VerifySpec, progress: bool) -> dict:
    from datapruner.verify.study import run_study
    from datapruner.verify.subsets import unavailable_reason

    start = time.time()
    skipped = {m: r for m in spec.methods if (r := unavailable_reason(m))}
    for method, reason in skipped.items():
        log.warning("verify: skipping method %s: %s", method, reason)
    spec = replace(spec, methods=tuple(m for m in spec.methods if m not in skipped))
    if not spec.methods:
        raise DataprunerError(f"no verify method can run: {skipped}")
    trainer, train_ids, train_emb = _splits(run, cfg, spec)
    pools = _pools(trainer, spec, cfg)
    subsets = _subsets(trainer, train_ids, train_emb, pools, spec, cfg)
    rows = run_study(spec, trainer, pools, subsets, progress)
    counts = {"n_train": len(trainer.y), "n_val": len(trainer.val[1]), "n_test": len(trainer.y_test),
              "pool_sizes": {str(p): int(len(i)) for p, i in pools.items()}}
    return write_outputs(Path(spec.out) if spec.out else RunDir(run).verify_dir, rows, spec, trainer, skipped, counts,
                         time.time() - start)


def _splits(run, cfg: Config, spec: VerifySpec):
    """The Trainer over train / validation / test, and the training rows' ids and embeddings."""
    from datapruner.verify import inputs
    from datapruner.verify.data import labels_of
    from datapruner.verify.splits import holdout_mask
    from datapruner.verify.trainer import Trainer

    table, emb = inputs.run_rows(run, spec.holdout_group)
    labels = labels_of(table, str(run))
    groups = table.column(spec.holdout_group).to_numpy(zero_copy_only=False) if spec.holdout_group else None
    x = inputs.student_inputs(run, table, emb, spec.student, spec.image_size, spec.channels, cfg.allow_pipe)
    if spec.test_src is None:
        test_mask = holdout_mask(labels, spec.test_fraction, cfg.seed, groups)
        test = Split(x[test_mask], labels[test_mask])
    else:
        test_mask = np.zeros(len(labels), bool)
        test = inputs.test_split(spec.test_src, run, cfg, spec.student, spec.image_size, spec.channels)
    rest = np.flatnonzero(~test_mask)
    val_in_rest = holdout_mask(labels[rest], spec.val_fraction, cfg.seed + 1, None if groups is None else groups[rest])
    train_rows, val_rows = rest[~val_in_rest], rest[val_in_rest]
    trainer = Trainer(spec.student, spec.width, Split(x[train_rows], labels[train_rows]),
                      Split(x[val_rows], labels[val_rows]), test)
    log.info("verify: %d training, %d validation and %d test samples, %s student; %s", len(train_rows),
             len(val_rows), len(test), spec.student, _unseen_note(trainer.unseen_test_labels))
    return trainer, table.take(train_rows).select(["shard", "key", "label"]), emb[train_rows]


def _unseen_note(unseen: dict) -> str:
    if not unseen:
        return "every test label occurs in training"
    return f"{sum(unseen.values())} test samples have labels the training data never has ({unseen}): counted as errors"


def _pools(trainer, spec: VerifySpec, cfg: Config) -> dict[float, np.ndarray]:
    from datapruner.verify.splits import nested_pools

    return nested_pools(trainer.y.numpy(), spec.pools, cfg.seed + 2)


def _subsets(trainer, ids, emb: np.ndarray, pools: dict, spec: VerifySpec, cfg: Config) -> dict:
    """{(pool, method, fraction, seed): kept training-row indices}, each pool scored afresh per seed
    (in the student workers: one (pool, seed) a task)."""
    from datapruner.embed.outputs import unit_rows
    from datapruner.verify.scoring import PoolData
    from datapruner.verify.study import usable_cores
    from datapruner.verify.trainer import forked_map

    unit = unit_rows(emb)
    data = {pool: PoolData(ids.take(index), np.ascontiguousarray(unit[index]), trainer.x[_tensor(index)],
                           trainer.y[_tensor(index)]) for pool, index in pools.items()}
    tasks = [(pool, seed) for pool in pools for seed in spec.seeds]
    prune = lambda task: _prune_pool(task, data[task[0]], pools[task[0]], trainer, spec, cfg)  # noqa: E731
    out = {}
    for kept in forked_map(prune, tasks, spec.workers or usable_cores()):
        out.update(kept)
    return out


def _prune_pool(task, data, index: np.ndarray, trainer, spec: VerifySpec, cfg: Config) -> dict:
    from datapruner.verify.scoring import pool_scores
    from datapruner.verify.subsets import kept_mask, metric_of

    pool, seed = task
    start = time.time()
    table = pool_scores(data, {metric_of(m) for m in spec.methods}, cfg, seed, _el2n_scorer(trainer, spec, len(index)))
    kept = {(pool, method, fraction, seed): index[kept_mask(table, method, fraction, cfg, seed, spec.balance)]
            for method in spec.methods for fraction in spec.fractions}
    log.info("verify: pool %g (%d samples) scored and pruned for seed %d (%.1fs)", pool, len(index), seed,
             time.time() - start)
    return kept


def _el2n_scorer(trainer, spec: VerifySpec, pool_size: int):
    from datapruner.verify.el2n import student_el2n
    from datapruner.verify.study import train_spec

    schedule = train_spec(spec, "fixed_epochs", pool_size)
    return lambda x, y, seed: student_el2n(x, y, trainer.new_model, schedule, spec.el2n_epoch, spec.el2n_inits, seed)


def _tensor(index: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(index, np.int64))


def write_outputs(out: Path, rows: list[dict], spec, trainer, skipped: dict, counts: dict, seconds: float) -> dict:
    from datapruner.io.atomic import write_json
    from datapruner.verify.publish import publish
    from datapruner.verify.study import variance_sources

    teachers = {str(p): {k: v for k, v in t.items() if k != "logits"} for p, t in trainer.teachers.items()}
    published = publish(rows, out, max((t["accuracy"] for t in teachers.values()), default=None),
                        trainer.test_correct(trainer.study_keys))
    students = [trainer.memo[k] for k in trainer.study_keys]
    summary = {
        "teachers": teachers, **counts, "unseen_test_labels": trainer.unseen_test_labels, "rows": len(rows),
        "students_trained": len(students), "students_not_converged": sum(1 for i in students if i["converged"] is False),
        "skipped_methods": skipped, "variance_sources": variance_sources(spec), "spec": {f.name: getattr(spec, f.name) for f in fields(spec)},
        "claims": published["claims"], "files": [*published["files"].values(), *published["figures"]],
        "seconds": round(seconds, 1),
    }
    write_json(out / "summary.json", summary)
    return summary
