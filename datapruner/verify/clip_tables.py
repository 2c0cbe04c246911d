"""verify --task clip's results.csv and summary.md: the arms (method × fraction ± KD, each metric's mean over
seeds with its 95 % t interval), the claims, and every comparison, the ones that go against pruning first."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from datapruner.io.atomic import atomic_path
from datapruner.verify.clip_eval import METRICS

COLUMNS = ("task", "budget_mode", "method", "fraction", "kept", "pool_size", "kd", "alpha", "seed", *METRICS,
           "val_loss", "converged", "steps", "samples_seen", "label_tv", "classes_present", "model", "train_seconds",
           "student_id")
NAMES = {"zero_shot": "zero-shot acc", "i2t_r1": "i→t R@1", "i2t_r5": "i→t R@5", "t2i_r1": "t→i R@1",
         "t2i_r5": "t→i R@5"}


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def mean_ci(values: list[float]) -> str:
    """"mean [low, high]" in %, the t interval over seeds."""
    from scipy import stats as sps

    v = np.asarray(values, np.float64) * 100
    if v.size < 2:
        return f"{v.mean():.1f}"
    half = sps.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return f"{v.mean():.1f} [{v.mean() - half:.1f}, {v.mean() + half:.1f}]"


def arm_table(rows: list[dict]) -> list[str]:
    by_arm: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_arm[(r["method"], -float(r["fraction"]), float(r["alpha"]))].append(r)
    lines = ["| method | kept fraction | KD alpha | kept | " + " | ".join(NAMES[m] for m in METRICS) + " | converged |",
             "|---" * (5 + len(METRICS)) + "|"]
    for (method, neg_f, alpha), members in sorted(by_arm.items()):
        conv = sum(1 for r in members if r.get("converged") is not False)
        lines.append(f"| {method} | {-neg_f:g} | {alpha:g} | {int(np.median([r['kept'] for r in members]))} | "
                     + " | ".join(mean_ci([r[m] for r in members]) for m in METRICS) + f" | {conv}/{len(members)} |")
    return lines


def claim_table(verdicts: list[dict]) -> list[str]:
    lines = ["| claim | metric | method | KD alpha | verdict | per fraction |", "|---|---|---|---|---|---|"]
    for c in sorted(verdicts, key=lambda c: (c["verdict"] != "refuted", c["claim"], c["metric"], c["method"])):
        per = ", ".join(f"{f}: {v}" for f, v in c["fractions"].items())
        lines.append(f"| {c['claim']} | {NAMES[c['metric']]} | {c['method']} | {c['alpha']:g} | {c['verdict']} | {per} |")
    return lines


def comparison_table(comps: list[dict]) -> list[str]:
    """Every comparison, lowest difference (against pruning) first."""
    lines = ["| claim | metric | method | fraction | KD alpha | n | diff (pp) | 95 % CI (pp) | p | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(comps, key=lambda c: (c["diff"] if c["diff"] is not None else 0, c["claim"], c["metric"])):
        low, high = c["ci"]
        ci = "n/a" if low is None else f"[{100 * low:.2f}, {100 * high:.2f}]"
        diff = "n/a" if c["diff"] is None else f"{100 * c['diff']:.2f}"
        lines.append(f"| {c['claim']} | {NAMES[c['metric']]} | {c['method']} | {c['fraction']:g} | {c['alpha']:g} | "
                     f"{c['n']} | {diff} | {ci} | {c['p']:.4g} | {c['p_holm']:.4g} | {c['verdict']} |")
    return lines


def markdown(rows: list[dict], comps: list[dict], verdicts: list[dict], summary: dict) -> str:
    head = (f"# verify --task clip\n\n{summary['n_train']} training pairs (pool), {summary['n_val']} validation, "
            f"{summary['n_test']} held-out; {len({r['seed'] for r in rows})} seeds; every arm saw the same samples "
            f"({rows[0]['samples_seen'] if rows else 0}); device {summary['device']}.\n\n"
            "Arms: mean over seeds [95 % t interval over seeds], in %.\n\n")
    note = ("\n\nComparisons: paired t-test over seeds with the test-set term; the CI is the test's own t interval "
            "(it excludes 0 exactly when the unadjusted p < 0.05); p is unadjusted, p (Holm) within the family "
            "(claim × metric × KD alpha). Rows against pruning first.\n\n")
    return (head + "\n".join(arm_table(rows)) + "\n\n## Claims\n\n" + "\n".join(claim_table(verdicts))
            + "\n\n## Every comparison" + note + "\n".join(comparison_table(comps)) + "\n")
