"""`datapruner verify`: train students on pruned subsets (with and without KD) and check the scaling claims."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.verify.study import StudySpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifySpec(StudySpec):
    """Everything `verify` takes beside the run's Config: the study grid (StudySpec) and where data comes from.

    methods       subset of random, proto_hard, proto_easy, el2n, dbp; methods whose metric or budget is not
                  registered are skipped and listed in the summary.
    kd_alphas     KD weights: floats in [0, 1] (0.0 = plain CE) and/or "auto" (alpha from the fraction:
                  clip(1 - f/2, 0.5, 0.9)). KD loss: (1-a)·CE + a·T²·KL(teacher^T || student^T), T=`temperature`.
    budget_modes  fixed_epochs (`epochs` passes over each subset) and/or fixed_steps (`steps`, default the
                  steps of `epochs` passes over all training data, so every student gets the full-data compute).
    student       linear | mlp (on the run's embeddings) | cnn (on images decoded from the shards at
                  `image_size`² with `channels` channels).
    test_src      held-out data: shards, a run dir or a precomputed embeddings dir (with labels). When None,
                  a stratified `test_fraction` of the run is held out (seed cfg.seed) and pruning sees the rest
                  (scores that fit on the whole run, e.g. el2n probes and k-means, did see the held-out rows;
                  the students and the teacher never do).
    src           embed these shards into RUN first.
    threads       torch CPU threads (default: all cores); out: where the results go (default RUN/verify).
    """

    test_src: str | None = None
    test_fraction: float = 0.2
    src: str | None = None
    image_size: int = 32
    channels: int = 3
    threads: int | None = None
    out: str | Path | None = None


def run_verify(run: str | Path, cfg: Config, spec: VerifySpec, progress: bool = True) -> dict:
    """Train a teacher on all training data, then students on each method's subsets; write RUN/verify/.

    Every student: AdamW, linear warm-up then cosine decay, gradient clipping (with or without KD), seeded
    init and batch order; the same (subset, steps, alpha, seed) is trained once and reused.
    Writes RUN/verify/{results.json, results.csv, aggregate.json, power_law.json, comparisons.json, claims.json,
    summary.json, summary.md, *.png} and returns the summary dict. Reached through datapruner.api.verify.
    """
    import torch

    spec = replace(spec, fractions=tuple(sorted(float(f) for f in spec.fractions)),
                   kd_alphas=tuple("auto" if a == "auto" else float(a) for a in spec.kd_alphas))
    threads_before = torch.get_num_threads()
    torch.set_num_threads(spec.threads or os.cpu_count() or 1)
    try:
        if spec.src is not None:
            from datapruner import api

            api.embed(spec.src, run, cfg, progress=progress)
        summary = _study(run, cfg, spec, progress)
    finally:
        torch.set_num_threads(threads_before)
    return summary


def _study(run, cfg: Config, spec: VerifySpec, progress: bool) -> dict:
    from datapruner.verify import inputs
    from datapruner.verify.study import Trainer, run_study
    from datapruner.verify.subsets import unavailable_reason

    start = time.time()
    skipped = {m: r for m in spec.methods if (r := unavailable_reason(m))}
    for method, reason in skipped.items():
        log.warning("verify: skipping method %s: %s", method, reason)
    spec = replace(spec, methods=tuple(m for m in spec.methods if m not in skipped))
    if not spec.methods:
        raise DataprunerError(f"no verify method can run: {skipped}")
    table = inputs.scores_with_metrics(run, cfg, inputs.metrics_for(spec.methods))
    if spec.test_src is None:
        table, test_table = inputs.holdout_split(table, spec.test_fraction, cfg.seed)
        test = inputs.train_split(run, test_table, spec.student, spec.image_size, spec.channels)
    else:
        test = inputs.test_split(spec.test_src, run, cfg, spec.student, spec.image_size, spec.channels)
    train = inputs.train_split(run, table, spec.student, spec.image_size, spec.channels)
    log.info("verify: %d training and %d test samples, %s student", len(train), len(test), spec.student)
    subsets = inputs.kept_indices(table, spec.methods, spec.fractions, spec.seeds, cfg, spec.balance)
    trainer = Trainer(spec, train, test, cfg.seed)
    rows = run_study(spec, trainer, subsets, progress)
    return write_outputs(Path(spec.out) if spec.out else RunDir(run).verify_dir, rows, spec, trainer, skipped, len(train), len(test),
                         time.time() - start)


def write_outputs(out: Path, rows: list[dict], spec, trainer, skipped: dict, n_train: int, n_test: int,
                  seconds: float) -> dict:
    from datapruner.io.atomic import atomic_path, write_json
    from datapruner.verify import claims, plots, powerlaw, results

    paths = results.write_table(rows, out)
    agg = results.aggregate(rows)
    fits = powerlaw.fit_all(agg)
    comparisons = {"vs_random": results.compare_to_random(agg), "kd_vs_no_kd": results.compare_kd(agg),
                   "best_fixed_alpha": results.best_alpha(agg), "tie_rule": f"|diff| < {results.TIE_STDS} pooled stds"}
    write_json(out / "aggregate.json", agg)
    write_json(out / "power_law.json", fits)
    write_json(out / "comparisons.json", comparisons)
    verdicts = claims.evaluate(agg, fits, comparisons["best_fixed_alpha"])
    write_json(out / "claims.json", verdicts)
    figures = plots.write_plots(agg, fits, out, trainer.teacher_info["accuracy"])
    table_md = results.markdown_table(agg)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(f"# verify\n\nteacher accuracy: {100 * trainer.teacher_info['accuracy']:.2f}%  \n"
                       f"train {n_train}, test {n_test}, student {spec.student}\n{table_md}")
    summary = {
        "teacher": trainer.teacher_info, "n_train": n_train, "n_test": n_test, "rows": len(rows),
        "students_trained": len(trainer.memo), "skipped_methods": skipped,
        "spec": {f.name: getattr(spec, f.name) for f in fields(spec)},
        "power_law": [{k: f[k] for k in ("budget_mode", "balance", "method", "alpha_setting", "exponent", "faster_than_power_law")}
                      for f in fits],
        "claims": [{"claim": c["claim"], "budget_mode": c["budget_mode"], "balance": c["balance"], "holds": c["holds"]}
                   for c in verdicts],
        "files": [str(p) for p in (*paths.values(), out / "aggregate.json", out / "power_law.json",
                                   out / "comparisons.json", out / "claims.json", out / "summary.md", *figures)],
        "seconds": round(seconds, 1),
    }
    write_json(out / "summary.json", summary)
    return summary
