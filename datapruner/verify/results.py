"""verify's result rows: the table (JSON + CSV), the per-setting aggregate with its measured regime, and the
paired comparisons (method vs random, KD vs no KD), each with p, Holm-adjusted p, CI and verdict (verify/stats.py).
verify/publish.py writes them with the claims, fits, tables and plots built on them.

One aggregate entry per (budget_mode, balance, pool, method, alpha_setting, fraction). When a method was scored
on several embeddings, the rows of the main one ("ssl" when present, else the most common) keep the method's
name and the others are published as "METHOD [EMBEDDING]" so no row is merged into another.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from datapruner.io.atomic import atomic_path, write_json
from datapruner.verify import stats

COLUMNS = ("budget_mode", "pool", "pool_size", "method", "embedding", "balance", "fraction", "kept", "kd",
           "alpha_setting", "alpha", "seed", "accuracy", "error", "val_accuracy", "val_loss", "converged", "steps",
           "samples_seen", "epochs_on_subset", "full_data_passes", "regime", "label_tv", "classes_present", "student",
           "teacher_accuracy", "train_seconds")
GROUP = ("budget_mode", "balance", "pool", "method", "alpha_setting", "fraction")
CORRECT, CORRECT_FILE = "_test_correct", "test_correct.npy"  # in-memory per-sample correctness; its file
NO_KD = "0.0"
FULL = 1.0
REGIME_BELOW, REGIME_SAME, REGIME_ABOVE, REGIME_FULL, REGIME_UNTESTED = (
    "below full", "not distinguishable from full", "above full", "full pool", "untested")


def write_table(rows: list[dict], out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    write_json(out_dir / "results.json", rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out_dir / "results.csv") as tmp:
        tmp.write_text(buf.getvalue())
    return {"json": out_dir / "results.json", "csv": out_dir / "results.csv"}


def normalise(rows: list[dict]) -> list[dict]:
    """Copies of the rows with a method name per embedding (see the module docstring)."""
    embeddings: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        embeddings[row["method"]][row.get("embedding")] += 1
    main = {m: ("ssl" if "ssl" in c else c.most_common(1)[0][0]) for m, c in embeddings.items()}
    out = []
    for row in rows:
        emb = row.get("embedding")
        name = row["method"] if emb == main[row["method"]] else f"{row['method']} [{emb}]"
        out.append({**row, "method": name, "pool": float(row.get("pool", FULL)), "fraction": float(row["fraction"])})
    return out


def index_rows(rows: list[dict]) -> dict[tuple, dict[int, dict]]:
    """GROUP key -> {seed: row} of the normalised rows."""
    index: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for row in normalise(rows):
        index[tuple(row[k] for k in GROUP)][row["seed"]] = row
    return dict(index)


def accuracy_by_seed(arm: dict[int, dict] | None) -> dict[int, float]:
    """{seed: test accuracy}, carrying each seed's per-test-sample correctness when the rows have it."""
    out = stats.SeedValues() if arm is None else stats.SeedValues({s: float(r["accuracy"]) for s, r in arm.items()})
    if arm and all(r.get(CORRECT) is not None for r in arm.values()):
        out.correct = {s: r[CORRECT] for s, r in arm.items()}
    if arm:
        flags = [r.get("converged") for r in arm.values()]
        out.converged = False if False in flags else (True if all(f is True for f in flags) else None)
    return out


def accuracy_ci(arm: dict[int, dict]) -> tuple[float, float]:
    """The t interval of an arm's mean accuracy over seeds, with the test-set term (verify/stats.py)."""
    acc = accuracy_by_seed(arm)
    seeds = sorted(acc)
    extra = 0.0
    if acc.correct:
        mean_correct = np.mean([acc.correct[s].astype(np.float64) for s in seeds], axis=0)
        extra = float(mean_correct.std(ddof=1) / np.sqrt(mean_correct.size)) if mean_correct.size > 1 else 0.0
    return stats.t_interval([acc[s] for s in seeds], extra)


def with_correct(rows: list[dict], correct: np.ndarray | None) -> list[dict]:
    """Copies of the rows carrying their student's test correctness (row `student_id` → `correct` row)."""
    if correct is None:
        return rows
    return [{**r, CORRECT: correct[r["student_id"]]} if r.get("student_id") is not None else r for r in rows]


def read_results(out_dir: str | Path) -> list[dict]:
    """A verify output folder's rows, with the test correctness of their students (test_correct.npy) attached."""
    import json

    out_dir = Path(out_dir)
    rows = json.loads((out_dir / "results.json").read_text())
    path = out_dir / CORRECT_FILE
    if not path.exists():
        return rows
    n_test = json.loads((out_dir / "summary.json").read_text())["n_test"]
    return with_correct(rows, np.unpackbits(np.load(path), axis=1)[:, :n_test].astype(bool))


def full_pool_arm(index: dict, budget: str, balance: str, pool: float) -> dict[int, dict] | None:
    """The full pool without KD (every method is the same there): random's rows, else any method's."""
    candidates = [(k[3] != "random", k[3]) for k in index
                  if k[:3] == (budget, balance, pool) and k[4] == NO_KD and k[5] == FULL]
    return index[(budget, balance, pool, min(candidates)[1], NO_KD, FULL)] if candidates else None


def regimes(index: dict) -> list[dict]:
    """Per (budget, balance, pool, pruned fraction): is random@f (no KD) significantly below the full pool?

    Holm within each (budget, balance, pool)."""
    out = []
    for budget, balance, pool in sorted({k[:3] for k in index}):
        full = full_pool_arm(index, budget, balance, pool)
        family = []
        for f in sorted({k[5] for k in index if k[:3] == (budget, balance, pool) and k[5] < FULL}):
            rnd = index.get((budget, balance, pool, "random", NO_KD, f))
            if full is None or rnd is None:
                out.append({"budget_mode": budget, "balance": balance, "pool": pool, "fraction": f,
                            "regime": REGIME_UNTESTED, "why": "no full-pool or no random row without KD"})
                continue
            family.append({"budget_mode": budget, "balance": balance, "pool": pool, "fraction": f,
                           **stats.paired(accuracy_by_seed(full), accuracy_by_seed(rnd))})
        for c in stats.adjust_family(family):
            c["regime"] = {stats.HOLDS: REGIME_BELOW, stats.REFUTED: REGIME_ABOVE}.get(stats.significance(c), REGIME_SAME)
            c["test"] = "full pool − random@f, " + stats.TEST
        out += family
    return out


def with_regime(rows: list[dict]) -> list[dict]:
    """Copies of the rows, each with the measured regime of its (budget, balance, pool, fraction) and its p_holm."""
    found = {(r["budget_mode"], r["balance"], r["pool"], r["fraction"]): r for r in regimes(index_rows(rows))}
    out = []
    for row in rows:
        f = float(row["fraction"])
        reg = found.get((row["budget_mode"], row["balance"], float(row.get("pool", FULL)), f))
        out.append({**row, "regime": REGIME_FULL if f == FULL else (reg["regime"] if reg else REGIME_UNTESTED),
                    "regime_p_holm": None if reg is None else reg.get("p_holm")})
    return out


def aggregate(rows: list[dict]) -> list[dict]:
    """One entry per GROUP: seeds, accuracy mean/std/t CI (test-set term included), kept, converged share, label_tv, regime."""
    index = index_rows(rows)
    regime = {(r["budget_mode"], r["balance"], r["pool"], r["fraction"]): r for r in regimes(index)}
    out = []
    for key in sorted(index, key=_sort_key):
        members = [index[key][s] for s in sorted(index[key])]
        acc = np.array([r["accuracy"] for r in members], np.float64)
        low, high = accuracy_ci(index[key])
        reg = regime.get((key[0], key[1], key[2], key[5]))
        out.append({**dict(zip(GROUP, key)), "n_seeds": len(members), "seeds": [r["seed"] for r in members],
                    "kept": int(np.median([r["kept"] for r in members])), "pool_size": members[0].get("pool_size"),
                    "embedding": members[0].get("embedding"),
                    "accuracy_mean": _r(acc.mean()), "accuracy_std": _r(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                    "accuracy_ci": [_r(low), _r(high)], "error_mean": _r(1.0 - acc.mean()),
                    "converged_share": _mean(members, "converged"), "label_tv_mean": _mean(members, "label_tv"),
                    "classes_present": _min(members, "classes_present"), "alpha_mean": _mean(members, "alpha"),
                    "steps_mean": _mean(members, "steps"),
                    "regime": REGIME_FULL if key[5] == FULL else (reg["regime"] if reg else REGIME_UNTESTED),
                    "regime_p_holm": None if reg is None else reg.get("p_holm")})
    return out


def compare_to_random(index: dict) -> list[dict]:
    """Each method vs random (same budget, balance, pool, alpha setting, pruned fraction), paired by seed.

    A family per (budget, balance, pool, alpha_setting); verdict better / worse / inconclusive."""
    families: dict[tuple, list[dict]] = defaultdict(list)
    for key, arm in index.items():
        budget, balance, pool, method, alpha, f = key
        ref = index.get((budget, balance, pool, "random", alpha, f))
        if method == "random" or f >= FULL or ref is None:
            continue
        families[(budget, balance, pool, alpha)].append(
            {**dict(zip(GROUP, key)), **stats.paired(accuracy_by_seed(arm), accuracy_by_seed(ref))})
    return _finish(families, "method − random, ")


def compare_kd(index: dict) -> list[dict]:
    """Each KD setting vs no KD (same method, budget, balance, pool, fraction), paired by seed, with the share
    of the gap to the full pool (no KD) that KD closes. A family per (budget, balance, pool, alpha_setting).
    The full pool is the same subset for every method: it is compared once, under random's name."""
    families: dict[tuple, list[dict]] = defaultdict(list)
    for key, arm in index.items():
        budget, balance, pool, method, alpha, f = key
        plain = index.get((budget, balance, pool, method, NO_KD, f))
        if alpha == NO_KD or plain is None or (f >= FULL and plain is not full_pool_arm(index, budget, balance, pool)):
            continue
        c = {**dict(zip(GROUP, key)), **stats.paired(accuracy_by_seed(arm), accuracy_by_seed(plain))}
        c["gap_closed"] = gap_closed(c, full_pool_arm(index, budget, balance, pool), accuracy_by_seed(plain))
        families[(budget, balance, pool, alpha)].append(c)
    return _finish(families, "KD − no KD, ")


def gap_closed(kd_vs_plain: dict, full: dict[int, dict] | None, plain: dict[int, float]) -> float | None:
    """(KD − no KD) / (full pool − no KD), over the seeds all three share; None when pruning lost nothing."""
    if full is None or kd_vs_plain["n"] == 0:
        return None
    seeds = [s for s in kd_vs_plain["seeds"] if s in full]
    if not seeds:
        return None
    gap = float(np.mean([full[s]["accuracy"] - plain[s] for s in seeds]))
    gain = kd_vs_plain["diff"] if len(seeds) == kd_vs_plain["n"] else None
    return None if gap <= 0 or gain is None else _r(gain / gap, 3)


def comparisons(rows: list[dict]) -> dict:
    index = index_rows(rows)
    return {"vs_random": compare_to_random(index), "kd_vs_no_kd": compare_kd(index), "regime": regimes(index),
            "rule": stats.TEST + "; better / worse when the Holm-adjusted p < 0.05, else inconclusive"}


def _finish(families: dict[tuple, list[dict]], what: str) -> list[dict]:
    out = []
    for key in sorted(families, key=lambda k: tuple(map(str, k))):
        for c in stats.adjust_family(sorted(families[key], key=lambda c: (c["method"], c["fraction"]))):
            c["verdict"] = stats.outcome(c)
            c["test"] = what + stats.TEST
            out.append(c)
    return out


def _sort_key(key: tuple):
    return (key[0], key[1], key[2], key[3] != "random", key[3], key[4] != NO_KD, key[4], key[5])


def _mean(members: list[dict], field: str):
    vals = [float(r[field]) for r in members if r.get(field) is not None]
    return _r(np.mean(vals)) if vals else None


def _min(members: list[dict], field: str):
    vals = [r[field] for r in members if r.get(field) is not None]
    return min(vals) if vals else None


def _r(x, digits: int = 5):
    return None if x is None else round(float(x), digits)
