"""Power-law fits of test error against kept size: error ≈ a · n^(−b).

A curve that falls faster than a power law (Sorscher et al. 2022) bends down in log-log space:
its local exponents grow in magnitude with n, and the quadratic term of a log-log fit is negative.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def fit_power_law(sizes, errors) -> dict:
    """Least squares on log(error) = log(a) − b·log(n); plus local exponents and log-log curvature."""
    n = np.asarray(sizes, np.float64)
    err = np.clip(np.asarray(errors, np.float64), 1e-6, None)
    order = np.argsort(n)
    ln, le = np.log(n[order]), np.log(err[order])
    if len(np.unique(ln)) < 2:
        return {"exponent": None, "prefactor": None, "r2": None, "local_exponents": [], "curvature": None, "points": int(len(n))}
    slope, intercept = np.polyfit(ln, le, 1)
    pred = intercept + slope * ln
    ss_res, ss_tot = float(((le - pred) ** 2).sum()), float(((le - le.mean()) ** 2).sum())
    local = [float(-(le[i + 1] - le[i]) / (ln[i + 1] - ln[i])) for i in range(len(ln) - 1) if ln[i + 1] > ln[i]]
    curvature = float(np.polyfit(ln, le, 2)[0]) if len(np.unique(ln)) >= 3 else None
    return {"exponent": round(float(-slope), 5), "prefactor": round(float(np.exp(intercept)), 6),
            "r2": round(1.0 - ss_res / ss_tot, 5) if ss_tot > 0 else None,
            "local_exponents": [round(v, 5) for v in local],
            "curvature": None if curvature is None else round(curvature, 5),
            "faster_than_power_law": None if curvature is None else bool(curvature < 0),
            "points": int(len(n))}


def fit_all(agg: list[dict]) -> list[dict]:
    """One fit per (budget_mode, balance, method, alpha_setting) over the mean error at each kept size."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for a in agg:
        groups[(a["budget_mode"], a["balance"], a["method"], a["alpha_setting"])].append(a)
    out = []
    for (budget, balance, method, alpha), members in sorted(groups.items()):
        fit = fit_power_law([m["kept"] for m in members], [1.0 - m["accuracy_mean"] for m in members])
        out.append({"budget_mode": budget, "balance": balance, "method": method, "alpha_setting": alpha, **fit})
    return out
