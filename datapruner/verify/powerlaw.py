"""Power-law fits of test error against kept size, error ≈ a · kept^(−b), with confidence intervals over seeds.

One fit per (budget_mode, balance, pool, method, alpha_setting) over every fraction of that pool (the full pool
included). From result rows: the exponent of the seed-mean errors, each seed's own exponent and the t interval of
their mean, and against random at the same (budget, balance, pool, alpha_setting): the paired t-test of the
per-seed exponent differences with its interval (verify/stats.py), which is what claims decide on. The test-set
term of an exponent comes from linearising it in the per-size accuracies (the delta method, `exponent_terms`).
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
from datapruner.verify.results import CORRECT

FIT_KEY = ("budget_mode", "balance", "pool", "method", "alpha_setting")


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
    extra = stats.weighted_test_set_se(exponent_terms(curve, seeds, log_kept, err), seeds)
    low, high = stats.t_interval(per_seed, extra)
    out = {**fit, "n_seeds": len(seeds), "kept": [int(round(k)) for k in np.exp(log_kept)],
           "error_mean": [round(float(e), 5) for e in err.mean(axis=0)],
           "exponent_by_seed": {str(s): round(float(b), 5) for s, b in zip(seeds, per_seed)},
           "exponent_ci": [stats._r(low), stats._r(high)]}
    if ref is not None:
        out["vs_random"] = _vs_random(curve, ref)
    return out


def exponent_terms(curve: dict, seeds: list[int], log_kept: np.ndarray, err: np.ndarray) -> list[tuple]:
    """The exponent linearised in the accuracies (delta method): [(correctness by seed, weight)] per kept size,
    so that the test-set term of an exponent is verify/stats.py's weighted one. ∂b/∂acc_f = x_f / (ē_f · Σx²)."""
    x = log_kept - log_kept.mean()
    weights = x / (np.clip(err.mean(axis=0), 1e-6, None) * (x ** 2).sum())
    correct = lambda size: ({s: curve[size][s][CORRECT] for s in seeds}  # noqa: E731
                            if all(curve[size][s].get(CORRECT) is not None for s in seeds) else None)
    return [(correct(size), float(w)) for size, w in zip(sorted(curve), weights)]


def exponent_contrast(curve: dict, ref: dict) -> tuple[dict, list[tuple], list[int]]:
    """Per-seed exponent − random's over the sizes and seeds both curves share: ({seed: diff}, the linearised
    test-set terms of the difference, the shared sizes)."""
    sizes = sorted(set(curve) & set(ref))
    curve, ref = {f: curve[f] for f in sizes}, {f: ref[f] for f in sizes}
    seeds = _complete_seeds(curve, ref)
    if len(sizes) < 2 or not seeds:
        return {}, [], sizes
    log_kept, err = _matrix(curve, seeds)
    log_ref, err_ref = _matrix(ref, seeds)
    diffs = exponents(log_kept, err) - exponents(log_ref, err_ref)
    terms = exponent_terms(curve, seeds, log_kept, err) + [
        (c, -w) for c, w in exponent_terms(ref, seeds, log_ref, err_ref)]
    return dict(zip(seeds, (float(d) for d in diffs))), terms, sizes


def converged(*curves) -> bool | None:
    """False when any row of the curves did not converge, True when every one did."""
    flags = [r.get("converged") for c in curves for arm in c.values() for r in arm.values()]
    return False if False in flags else (True if flags and all(f is True for f in flags) else None)


def _vs_random(curve: dict, ref: dict) -> dict:
    """Exponent − random's exponent: paired over the seeds both curves have at every shared size, the t-test with
    the test-set term (verify/stats.py), and the difference of the seed-mean fits."""
    diffs, terms, sizes = exponent_contrast(curve, ref)
    if not diffs:
        return {"n": len(diffs), "diff": None, "why": "no shared seeds / fewer than 2 shared kept sizes"}
    seeds = sorted(diffs)
    shared = {f: curve[f] for f in sizes}, {f: ref[f] for f in sizes}
    test = stats.compare_diffs(diffs, stats.weighted_test_set_se(terms, seeds))
    (log_kept, err), (log_ref, err_ref) = _matrix(shared[0], seeds), _matrix(shared[1], seeds)
    point = float(exponents(log_kept, err.mean(axis=0)) - exponents(log_ref, err_ref.mean(axis=0)))
    return {**test, "test_set_term": all(c for c, _ in terms), "converged": converged(*shared),
            "diff_of_mean_fits": round(point, 5), "test": "per-seed exponent − random's, " + stats.TEST}


def _fit_aggregate(agg: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for a in agg:
        groups[tuple(a.get(k) for k in FIT_KEY)].append(a)
    return [{**dict(zip(FIT_KEY, key)), **fit_power_law([m["kept"] for m in members], [1.0 - m["accuracy_mean"] for m in members])}
            for key, members in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))]
