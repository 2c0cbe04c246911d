"""Power-law fits of test error against kept size, error ≈ a · kept^(−b), with confidence intervals over seeds.

One fit per (budget_mode, balance, pool, method, alpha_setting) over every fraction of that pool (the full pool
included). From result rows: the exponent of the seed-mean errors, a bootstrap CI of it (resample seeds with
replacement, refit), each seed's own exponent, and against random at the same (budget, balance, pool,
alpha_setting): the difference of exponents with a paired bootstrap CI (the same resampled seeds for both) and the
paired t-test of the per-seed exponent differences (verify/stats.py), which is what claims decide on.
`fit_across_pools` fits the other axis, the one Sorscher et al.'s "beyond power-law scaling" is about: at a fixed
kept fraction, error against kept size as the pool grows (pruning a larger pool to the same fraction). Random
pruning follows the data's own power law there; a good metric's error falls faster: its exponent significantly
above random's. Along the fraction axis of one pool a steeper exponent means nothing by itself (a curve that
starts worse and meets random at the full pool is steeper).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from datapruner.verify import stats

FIT_KEY = ("budget_mode", "balance", "pool", "method", "alpha_setting")
BOOTSTRAP = 1000


def fit_power_law(sizes, errors) -> dict:
    """Least squares on log(error) = log(a) − b·log(kept); the local exponents between neighbouring sizes."""
    n = np.asarray(sizes, np.float64)
    err = np.clip(np.asarray(errors, np.float64), 1e-6, None)
    order = np.argsort(n)
    ln, le = np.log(n[order]), np.log(err[order])
    if len(np.unique(ln)) < 2:
        return {"exponent": None, "prefactor": None, "r2": None, "local_exponents": [], "points": int(len(n))}
    slope, intercept = np.polyfit(ln, le, 1)
    pred = intercept + slope * ln
    ss_res, ss_tot = float(((le - pred) ** 2).sum()), float(((le - le.mean()) ** 2).sum())
    local = [float(-(le[i + 1] - le[i]) / (ln[i + 1] - ln[i])) for i in range(len(ln) - 1) if ln[i + 1] > ln[i]]
    return {"exponent": round(float(-slope), 5), "prefactor": round(float(np.exp(intercept)), 6),
            "r2": round(1.0 - ss_res / ss_tot, 5) if ss_tot > 0 else None,
            "local_exponents": [round(v, 5) for v in local], "points": int(len(n))}


def exponents(log_kept: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """−slope of log(error) on log(kept) for each row of `errors` (shape (..., n_sizes))."""
    le = np.log(np.clip(errors, 1e-6, None))
    x = log_kept - log_kept.mean()
    return -((le - le.mean(axis=-1, keepdims=True)) * x).sum(axis=-1) / (x ** 2).sum()


def fit_all(rows_or_agg: list[dict]) -> list[dict]:
    """Fits from result rows (with CIs) or from aggregate entries (point fits of the mean error only)."""
    if rows_or_agg and "accuracy_mean" in rows_or_agg[0]:
        return _fit_aggregate(rows_or_agg)
    from datapruner.verify.results import normalise

    curves = _curves(normalise(rows_or_agg))
    out = []
    for key in sorted(curves, key=lambda k: tuple(map(str, k))):
        ref_key = key[:3] + ("random",) + key[4:]
        out.append({**dict(zip(FIT_KEY, key)), **_fit_curve(curves[key], curves.get(ref_key) if key[3] != "random" else None)})
    return out


ACROSS_KEY = ("budget_mode", "balance", "fraction", "method", "alpha_setting")


def fit_across_pools(rows: list[dict]) -> list[dict]:
    """One fit per (budget_mode, balance, pruned fraction, method, alpha_setting) over the pools (>= 2 needed)."""
    from datapruner.verify.results import FULL, normalise

    curves: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for r in normalise(rows):
        if r["fraction"] < FULL:
            curves[tuple(r[k] for k in ACROSS_KEY)][r["pool"]][r["seed"]] = r
    out = []
    for key in sorted(curves, key=lambda k: tuple(map(str, k))):
        if len(curves[key]) < 2:
            continue
        ref_key = key[:3] + ("random",) + key[4:]
        ref = curves.get(ref_key) if key[3] != "random" else None
        out.append({**dict(zip(ACROSS_KEY, key)), "axis": "pool", "pools": sorted(curves[key]),
                    **_fit_curve(curves[key], ref)})
    return out


def _curves(rows: list[dict]) -> dict[tuple, dict[float, dict[int, dict]]]:
    """FIT_KEY -> fraction -> seed -> row."""
    curves: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        curves[tuple(r[k] for k in FIT_KEY)][r["fraction"]][r["seed"]] = r
    return curves


def _matrix(curve: dict, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """log kept per fraction (median over seeds) and errors (seeds × fractions)."""
    fractions = sorted(curve)
    kept = np.array([np.median([curve[f][s]["kept"] for s in seeds]) for f in fractions], np.float64)
    err = np.array([[1.0 - float(curve[f][s]["accuracy"]) for f in fractions] for s in seeds], np.float64)
    return np.log(np.maximum(kept, 1.0)), err


def _complete_seeds(*curves) -> list[int]:
    sets = [set(seeds) for c in curves for seeds in c.values()]
    return sorted(set.intersection(*sets)) if sets else []


def _fit_curve(curve: dict, ref: dict | None) -> dict:
    seeds = _complete_seeds(curve)
    if not seeds or len(curve) < 2:
        return {"exponent": None, "n_seeds": len(seeds), "why": "fewer than 2 kept sizes or no seed with every size"}
    log_kept, err = _matrix(curve, seeds)
    fit = fit_power_law(np.exp(log_kept), err.mean(axis=0))
    per_seed = exponents(log_kept, err)
    out = {**fit, "n_seeds": len(seeds), "kept": [int(round(k)) for k in np.exp(log_kept)],
           "error_mean": [round(float(e), 5) for e in err.mean(axis=0)],
           "exponent_by_seed": {str(s): round(float(b), 5) for s, b in zip(seeds, per_seed)},
           "exponent_ci": _ci(exponents(log_kept, _resampled_means(err, len(seeds))))}
    if ref is not None:
        out["vs_random"] = _vs_random(curve, ref)
    return out


def _vs_random(curve: dict, ref: dict) -> dict:
    """Exponent − random's exponent: paired over the seeds both curves have at every shared fraction."""
    fractions = sorted(set(curve) & set(ref))
    curve, ref = {f: curve[f] for f in fractions}, {f: ref[f] for f in fractions}
    seeds = _complete_seeds(curve, ref)
    if len(fractions) < 2 or not seeds:
        return {"n": len(seeds), "diff": None, "why": "no shared seeds / fewer than 2 shared kept sizes"}
    log_kept, err = _matrix(curve, seeds)
    log_ref, err_ref = _matrix(ref, seeds)
    picks = _resample_indices(len(seeds))
    boot = exponents(log_kept, err[picks].mean(axis=1)) - exponents(log_ref, err_ref[picks].mean(axis=1))
    test = stats.paired(dict(zip(seeds, exponents(log_kept, err))), dict(zip(seeds, exponents(log_ref, err_ref))))
    point = float(exponents(log_kept, err.mean(axis=0)) - exponents(log_ref, err_ref.mean(axis=0)))
    return {**test, "diff_of_mean_fits": round(point, 5), "ci_refit": _ci(boot),
            "test": "per-seed exponent − random's, " + stats.TEST}


def _resample_indices(n: int) -> np.ndarray:
    return np.random.default_rng(stats.BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP, n))


def _resampled_means(err: np.ndarray, n: int) -> np.ndarray:
    return err[_resample_indices(n)].mean(axis=1)


def _ci(values: np.ndarray) -> list[float]:
    tail = 100 * (1 - stats.CI) / 2
    return [round(float(np.percentile(values, tail)), 5), round(float(np.percentile(values, 100 - tail)), 5)]


def _fit_aggregate(agg: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for a in agg:
        groups[tuple(a.get(k) for k in FIT_KEY)].append(a)
    return [{**dict(zip(FIT_KEY, key)), **fit_power_law([m["kept"] for m in members], [1.0 - m["accuracy_mean"] for m in members])}
            for key, members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))]
