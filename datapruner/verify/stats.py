"""Paired comparisons over seeds, Holm's correction, and the one verdict rule every claim uses.

Runs with the same (budget_mode, pool, balance, seed) share the initialisation and the batch order, so two arms
are compared PAIRED: only the seeds both have, one difference per seed.

The rule (a hypothesis "a > b", or "a < b" with direction -1):
  1. n = number of shared seeds. With n < 2 nothing is significant: the verdict is "inconclusive".
  2. Test: the two-sided paired t-test on the per-seed differences (a one-sample t-test of the differences
     against 0). Identical arms (every difference 0) have p = 1. Every seed is scored on the same test set, so
     the seeds alone say nothing about how the difference would move on another test set of the same size:
     where each student's per-sample correctness is known (verify keeps it), the standard error adds the
     test-set sampling term sd_i(δ_i)/√T (δ_i: sample i's seed-mean correctness difference, T test samples)
     to the seeds' sd/√n, with n − 1 degrees of freedom. A difference that lives in a few test samples is
     then no longer "significant" because five seeds agree on it.
  3. Within a family (the parts of one claim, or one table of comparisons) the p-values are Holm-adjusted.
  4. At level LEVEL (0.05) on the adjusted p: "holds" when the mean difference points the hypothesised way,
     "refuted" when it points the other way (significant in the opposite direction), else "inconclusive".
     Pure noise is inconclusive (at the test's error rate), never a verdict of its own.
  5. A claim made of several parts (a conjunction, e.g. "random beats every score-based method"): "refuted"
     when any part is refuted, "holds" when every part holds, else "inconclusive".
Next to the test: the mean difference and a seeded bootstrap 95 % CI of it (resampling seeds), which are
reported, not used for the decision (with 3-5 seeds a percentile bootstrap CI is too narrow to test with).
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.05
BOOTSTRAP = 2000
CI = 0.95
BOOTSTRAP_SEED = 0
HOLDS, REFUTED, INCONCLUSIVE, NOT_TESTED = "holds", "refuted", "inconclusive", "not tested"
TEST = "paired t-test over seeds (two-sided), Holm within the family, level 0.05"


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


def t_test(diffs, extra_se: float = 0.0) -> tuple[float, float]:
    """(t, two-sided p) of a one-sample t-test of the differences against 0, its standard error widened by
    `extra_se` (the test-set sampling term); (nan, 1) when untestable."""
    from scipy import stats

    d = np.asarray(diffs, np.float64)
    if d.size < 2 or not np.any(d != 0):
        return (math.nan, 1.0)
    se = math.sqrt(d.var(ddof=1) / d.size + extra_se ** 2)
    if se == 0:  # no spread anywhere: an exact, consistent difference
        return (math.copysign(math.inf, d[0]), 0.0)
    t = float(d.mean() / se)
    return (t, float(2 * stats.t.sf(abs(t), d.size - 1)))


def compare_diffs(diffs_by_seed: dict, extra_se: float = 0.0) -> dict:
    """Test and CI of per-seed differences (already paired)."""
    seeds = sorted(diffs_by_seed)
    d = np.array([diffs_by_seed[s] for s in seeds], np.float64)
    t, p = t_test(d, extra_se)
    low, high = bootstrap_ci(d)
    return {"n": len(seeds), "seeds": seeds, "diff": _r(d.mean()) if d.size else None,
            "ci": [_r(low), _r(high)], "t": _r(t), "p": _r(p, 6), "p_holm": _r(p, 6), "test_set_se": _r(extra_se)}


class SeedValues(dict):
    """{seed: value}; `correct` holds each seed's per-test-sample correctness (bool arrays) when known."""

    correct: dict | None = None


def test_set_se(a: dict | None, b: dict | None, seeds: list) -> float:
    """sd_i(δ_i)/√T of the seed-mean per-sample correctness difference (0 when the samples are unknown)."""
    if not a or not b or len(seeds) < 1:
        return 0.0
    delta = np.mean([a[s].astype(np.float64) - b[s] for s in seeds], axis=0)
    return float(delta.std(ddof=1) / math.sqrt(delta.size)) if delta.size > 1 else 0.0


def paired(a_by_seed: dict, b_by_seed: dict) -> dict:
    """a − b over the seeds both have: n, means, mean difference, bootstrap CI, t, p (p_holm = p until holm())."""
    shared = sorted(set(a_by_seed) & set(b_by_seed))
    extra = test_set_se(getattr(a_by_seed, "correct", None), getattr(b_by_seed, "correct", None), shared)
    out = compare_diffs({s: a_by_seed[s] - b_by_seed[s] for s in shared}, extra)
    out["mean_a"] = _r(np.mean([a_by_seed[s] for s in shared])) if shared else None
    out["mean_b"] = _r(np.mean([b_by_seed[s] for s in shared])) if shared else None
    return out


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


def verdict(comparison: dict, direction: int = 1, level: float = LEVEL) -> str:
    """holds / refuted / inconclusive for the hypothesis sign(diff) == direction (see the module docstring)."""
    if comparison.get("n", 0) < 2 or comparison.get("diff") is None:
        return INCONCLUSIVE
    if comparison["p_holm"] >= level or comparison["diff"] == 0:
        return INCONCLUSIVE
    return HOLDS if comparison["diff"] * direction > 0 else REFUTED


def outcome(comparison: dict, level: float = LEVEL) -> str:
    """The same rule for "a is better than b", worded for tables: better / worse / inconclusive."""
    return {HOLDS: "better", REFUTED: "worse"}.get(verdict(comparison, 1, level), INCONCLUSIVE)


def conjunction(verdicts: list[str]) -> str:
    """A claim made of parts: refuted if any part is, holds if every part does, else inconclusive."""
    if not verdicts:
        return NOT_TESTED
    if REFUTED in verdicts:
        return REFUTED
    return HOLDS if all(v == HOLDS for v in verdicts) else INCONCLUSIVE


def _r(x, digits: int = 5):
    if x is None:
        return None
    x = float(x)
    return round(x, digits) if math.isfinite(x) else None  # JSON has no nan / inf
