"""Paired comparisons over seeds, Holm's correction, and the one verdict rule every claim uses.

Runs with the same (budget_mode, pool, balance, seed) share the initialisation and the batch order, so two arms
are compared PAIRED: only the seeds both have, one difference per seed. More generally a claim tests a CONTRAST,
Σ_k w_k · acc_k over arms k (a paired difference is the contrast (1, −1); a trend across fractions or pools, or
an interaction, has other weights), computed per seed.

The rule (a hypothesis "contrast > 0", or "< 0" with direction -1):
  1. n = number of shared seeds. With n < 2 nothing is significant: the verdict is "inconclusive".
  2. Test: a two-sided one-sample t-test of the per-seed contrasts against 0, n − 1 degrees of freedom. Identical
     arms (every contrast 0) have p = 1. Every seed is scored on the same test set, so the seeds alone say nothing
     about how the contrast would move on another test set of the same size: where each student's per-sample
     correctness is known (verify keeps it), the standard error adds the test-set sampling term sd_i(δ_i)/√T
     (δ_i = Σ_k w_k · c̄_k,i, sample i's seed-mean correctness contrast, T test samples) to the seeds' sd/√n.
     A difference that lives in a few test samples is then no longer "significant" because five seeds agree.
  3. The CI printed beside it is the test's own: contrast ± t_{0.975, n−1} · the same standard error, so it
     excludes 0 exactly when the unadjusted p < 0.05.
  4. Within a family (the parts of one claim, or one table of comparisons) the p-values are Holm-adjusted.
  5. At level LEVEL (0.05) on the adjusted p: "holds" when the contrast points the hypothesised way, "refuted"
     when it points the other way, else "inconclusive". A comparison whose rows did not all converge
     (`converged` False) is "inconclusive: not converged" whatever its p. Pure noise is inconclusive (at the
     test's error rate), never a verdict of its own.
  6. A claim made of several parts (a conjunction, e.g. "random beats every score-based method"): "refuted"
     when any part is refuted, "holds" when every part holds, "inconclusive: not converged" when a part is and
     none is refuted, else "inconclusive". Parts of a trend that are significant in opposite directions (two
     fractions, two budgets) make it "contradictory" (`agreement`).
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.05
BOOTSTRAP = 2000
CI = 0.95
BOOTSTRAP_SEED = 0
HOLDS, REFUTED, INCONCLUSIVE, NOT_TESTED = "holds", "refuted", "inconclusive", "not tested"
NOT_CONVERGED, CONTRADICTORY = "inconclusive: not converged", "contradictory"
TEST = ("t-test over seeds (two-sided) with the test-set term, Holm within the family, level 0.05, "
        "CI = the test's t interval")


def bootstrap_ci(values, seed: int = BOOTSTRAP_SEED, n_boot: int = BOOTSTRAP) -> tuple[float, float]:
    """Percentile CI of the mean, resampling the values with replacement (seeded: same input, same CI)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return (math.nan, math.nan)
    if v.size == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    tail = 100 * (1 - CI) / 2
    return (float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)))


def standard_error(values, extra_se: float = 0.0) -> float:
    """sd/√n of the values, widened by `extra_se` (the test-set term); nan below 2 values."""
    v = np.asarray(values, np.float64)
    return math.sqrt(v.var(ddof=1) / v.size + extra_se ** 2) if v.size >= 2 else math.nan


def t_test(diffs, extra_se: float = 0.0) -> tuple[float, float]:
    """(t, two-sided p) of a one-sample t-test of the differences against 0, its standard error widened by
    `extra_se` (the test-set sampling term); (nan, 1) when untestable."""
    from scipy import stats

    d = np.asarray(diffs, np.float64)
    if d.size < 2 or not np.any(d != 0):
        return (math.nan, 1.0)
    se = standard_error(d, extra_se)
    if se == 0:  # no spread anywhere: an exact, consistent difference
        return (math.copysign(math.inf, d[0]), 0.0)
    t = float(d.mean() / se)
    return (t, float(2 * stats.t.sf(abs(t), d.size - 1)))


def t_interval(values, extra_se: float = 0.0) -> tuple[float, float]:
    """mean ± t_{(1+CI)/2, n−1} · standard_error: the interval of t_test (it excludes 0 iff p < 1 − CI)."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    if v.size < 2:
        return (float(v[0]), float(v[0])) if v.size else (math.nan, math.nan)
    half = float(stats.t.ppf((1 + CI) / 2, v.size - 1)) * standard_error(v, extra_se)
    return (float(v.mean() - half), float(v.mean() + half))


def compare_diffs(diffs_by_seed: dict, extra_se: float = 0.0) -> dict:
    """Test and CI of per-seed differences (already paired)."""
    seeds = sorted(diffs_by_seed)
    d = np.array([diffs_by_seed[s] for s in seeds], np.float64)
    t, p = t_test(d, extra_se)
    low, high = t_interval(d, extra_se) if np.any(d != 0) else (0.0, 0.0) if d.size else (math.nan, math.nan)
    return {"n": len(seeds), "seeds": seeds, "diff": _r(d.mean()) if d.size else None,
            "ci": [_r(low), _r(high)], "t": _r(t), "p": _r(p, 6), "p_holm": _r(p, 6), "test_set_se": _r(extra_se)}


class SeedValues(dict):
    """{seed: value}; `correct` holds each seed's per-test-sample correctness (bool arrays) when known,
    `converged` whether every row behind the values converged (None: unknown)."""

    correct: dict | None = None
    converged: bool | None = None


def test_set_se(a: dict | None, b: dict | None, seeds: list) -> float:
    """sd_i(δ_i)/√T of the seed-mean per-sample correctness difference (0 when the samples are unknown)."""
    if not a or not b:
        return 0.0
    return weighted_test_set_se([(a, 1.0), (b, -1.0)], seeds)


def weighted_test_set_se(terms: list[tuple[dict | None, float]], seeds: list) -> float:
    """sd_i(δ_i)/√T with δ_i = Σ_k w_k · (seed-mean correctness of arm k on sample i); 0 when any arm's
    samples are unknown or there are no seeds."""
    if not seeds or not terms or any(not c for c, _ in terms):
        return 0.0
    delta = sum(w * np.mean([c[s].astype(np.float64) for s in seeds], axis=0) for c, w in terms)
    return float(delta.std(ddof=1) / math.sqrt(delta.size)) if delta.size > 1 else 0.0


def contrast(terms: list[tuple[dict, float]]) -> dict:
    """Σ_k w_k · a_k per seed over the seeds every arm has, tested and with the test's CI; `converged` False
    when any arm's rows did not all converge."""
    shared = sorted(set.intersection(*(set(a) for a, _ in terms))) if terms else []
    extra = weighted_test_set_se([(getattr(a, "correct", None), w) for a, w in terms], shared)
    out = compare_diffs({s: sum(w * a[s] for a, w in terms) for s in shared}, extra)
    out["test_set_term"] = all(getattr(a, "correct", None) for a, _ in terms)
    out["converged"] = _all_converged(a for a, _ in terms)
    return out


def paired(a_by_seed: dict, b_by_seed: dict) -> dict:
    """a − b over the seeds both have: n, means, mean difference, the test's CI, t, p (p_holm = p until holm())."""
    out = contrast([(a_by_seed, 1.0), (b_by_seed, -1.0)])
    shared = out["seeds"]
    out["mean_a"] = _r(np.mean([a_by_seed[s] for s in shared])) if shared else None
    out["mean_b"] = _r(np.mean([b_by_seed[s] for s in shared])) if shared else None
    return out


def _all_converged(arms) -> bool | None:
    flags = [getattr(a, "converged", None) for a in arms]
    if any(f is False for f in flags):
        return False
    return True if flags and all(f is True for f in flags) else None


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [float(x) for x in adjusted]


def adjust_family(comparisons: list[dict]) -> list[dict]:
    """Set p_holm on each comparison of one family (in place) and return them."""
    for c, adj in zip(comparisons, holm([c["p"] for c in comparisons])):
        c["p_holm"] = _r(adj, 6)
        c["family_size"] = len(comparisons)
    return comparisons


def significance(comparison: dict, direction: int = 1, level: float = LEVEL) -> str:
    """holds / refuted / inconclusive from the adjusted p and the sign alone (tables mark convergence apart)."""
    if comparison.get("n", 0) < 2 or comparison.get("diff") is None:
        return INCONCLUSIVE
    if comparison["p_holm"] >= level or comparison["diff"] == 0:
        return INCONCLUSIVE
    return HOLDS if comparison["diff"] * direction > 0 else REFUTED


def verdict(comparison: dict, direction: int = 1, level: float = LEVEL) -> str:
    """A claim part's verdict (the module docstring's rule): `significance`, unless its rows did not converge."""
    if comparison.get("converged") is False:
        return NOT_CONVERGED
    return significance(comparison, direction, level)


def outcome(comparison: dict, level: float = LEVEL) -> str:
    """The significance rule for "a is better than b", worded for tables: better / worse / inconclusive."""
    return {HOLDS: "better", REFUTED: "worse"}.get(significance(comparison, 1, level), INCONCLUSIVE)


def conjunction(verdicts: list[str]) -> str:
    """A claim made of parts: refuted if any part is, holds if every part does, not converged if a part is
    (and none is refuted), else inconclusive."""
    if not verdicts:
        return NOT_TESTED
    if REFUTED in verdicts:
        return REFUTED
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return NOT_CONVERGED if NOT_CONVERGED in verdicts else INCONCLUSIVE


def agreement(verdicts: list[str]) -> str | None:
    """CONTRADICTORY when the verdicts hold in one place and are refuted in another, else None."""
    return CONTRADICTORY if HOLDS in verdicts and REFUTED in verdicts else None


def _r(x, digits: int = 5):
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None  # JSON has no nan / inf
