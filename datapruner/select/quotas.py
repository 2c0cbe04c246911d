"""Per-cluster keep counts: min Σ(N_j − t_j)² s.t. Σ N_j = K, lb_j ≤ N_j ≤ ub_j, in integers.

With an identity Hessian the continuous solution is N_j = clip(t_j + λ, lb_j, ub_j) for one scalar
λ (found by bisection: the sum is monotone in λ); rounding then floors and hands the remaining
units to the largest fractional parts that still have room, so Σ N_j = K exactly.
"""

from __future__ import annotations

import numpy as np


def waterfill(targets: np.ndarray, upper: np.ndarray, total: int, lower: np.ndarray | None = None) -> np.ndarray:
    """The continuous solution N_j = clip(t_j + λ, lb_j, ub_j) with Σ N_j = total."""
    t = np.asarray(targets, np.float64)
    ub = np.asarray(upper, np.float64)
    lb = np.zeros_like(ub) if lower is None else np.minimum(np.asarray(lower, np.float64), ub)
    if not lb.sum() <= total <= ub.sum():
        raise ValueError(f"cannot keep {total}: the bounds allow between {lb.sum():.0f} and {ub.sum():.0f}")
    lo, hi = float((lb - t).min()) - 1.0, float((ub - t).max()) + 1.0
    for _ in range(200):
        lam = (lo + hi) / 2
        if np.clip(t + lam, lb, ub).sum() < total:
            lo = lam
        else:
            hi = lam
    return np.clip(t + hi, lb, ub)


def round_preserving_sum(x: np.ndarray, upper: np.ndarray, total: int) -> np.ndarray:
    """Integers close to `x`, each ≤ upper, summing to `total` (ties go to the lower index)."""
    base = np.minimum(np.floor(x + 1e-9).astype(np.int64), np.asarray(upper, np.int64))
    short = int(total - base.sum())
    room = base < upper
    frac = np.where(room, x - base, -np.inf)
    order = np.lexsort((np.arange(len(x)), -frac))
    if short > 0:
        base[order[:short]] += 1
    elif short < 0:  # rounding overshot (only through float error): take back from the smallest fractions
        base[np.lexsort((np.arange(len(x)), frac))[: -short]] -= 1
    return base


def cluster_quotas(targets: np.ndarray, sizes: np.ndarray, total: int, lower: np.ndarray | None = None) -> np.ndarray:
    """Exact integer per-cluster keep counts for a total budget."""
    sizes = np.asarray(sizes, np.int64)
    continuous = waterfill(targets, sizes, total, lower)
    return round_preserving_sum(continuous, sizes, total)
