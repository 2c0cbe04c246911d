"""The verdict rule: paired t-test over seeds with the test-set term, its own t interval, Holm within a family,
holds / refuted / inconclusive / inconclusive: not converged, and contradictory parts."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from datapruner.verify import stats


def _arms(effect, noise=0.003, n_seeds=5, seed=0):
    """Per-seed accuracies of two arms sharing a seed offset (init, batch order), a differing by `effect`."""
    rng = np.random.default_rng(seed)
    init = rng.normal(0, 0.02, n_seeds)  # much larger than the effect: only pairing removes it
    b = {s: 0.80 + init[s] + rng.normal(0, noise) for s in range(n_seeds)}
    a = {s: 0.80 + effect + init[s] + rng.normal(0, noise) for s in range(n_seeds)}
    return a, b


def test_injected_effect_holds_and_the_opposite_is_refuted():
    a, b = _arms(0.02)
    better = stats.paired(a, b)
    assert better["n"] == 5 and better["diff"] == pytest.approx(0.02, abs=0.006)
    assert better["ci"][0] > 0 and better["p"] < 0.01
    assert stats.verdict(better) == "holds" and stats.outcome(better) == "better"
    assert stats.verdict(better, direction=-1) == "refuted"
    worse = stats.paired(b, a)
    assert stats.verdict(worse) == "refuted" and stats.outcome(worse) == "worse"


def test_pure_noise_is_inconclusive_at_the_test_error_rate():
    verdicts = [stats.verdict(stats.paired(*_arms(0.0, seed=s))) for s in range(300)]
    wrong = sum(v != "inconclusive" for v in verdicts)
    assert wrong / len(verdicts) < 0.1  # 5 % expected: a verdict from noise is the exception
    assert stats.verdict(stats.paired(*_arms(0.0, seed=1))) == "inconclusive"


def test_one_seed_is_never_significant():
    one = stats.paired({0: 0.9}, {0: 0.5})
    assert one["n"] == 1 and one["p"] == 1.0 and stats.verdict(one) == "inconclusive"
    assert stats.verdict(stats.paired({0: 0.9}, {1: 0.5})) == "inconclusive"  # no shared seed


def test_pairing_uses_only_shared_seeds_and_matches_scipy():
    a, b = _arms(0.01, n_seeds=6)
    del b[5]
    c = stats.paired(a, b)
    ref = scipy_stats.ttest_rel([a[s] for s in range(5)], [b[s] for s in range(5)])
    assert c["seeds"] == [0, 1, 2, 3, 4] and c["p"] == pytest.approx(ref.pvalue, rel=1e-4)
    assert c["t"] == pytest.approx(ref.statistic, rel=1e-4)


def test_identical_arms_are_inconclusive_and_exact_differences_significant():
    same = stats.paired({s: 0.7 for s in range(5)}, {s: 0.7 for s in range(5)})
    assert same["p"] == 1.0 and stats.verdict(same) == "inconclusive"
    exact = stats.paired({s: 0.7 + 0.01 * s for s in range(5)}, {s: 0.6 + 0.01 * s for s in range(5)})
    assert exact["p"] == 0.0 and stats.verdict(exact) == "holds"


def test_holm_adjusts_and_changes_a_borderline_family():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.2, 0.001]) == pytest.approx([0.2, 0.002])
    family = [{"n": 5, "diff": 0.01, "p": p, "p_holm": p} for p in (0.01, 0.04, 0.03)]
    assert [stats.verdict(c) for c in family] == ["holds"] * 3  # each alone is significant
    stats.adjust_family(family)
    assert [stats.verdict(c) for c in family] == ["holds", "inconclusive", "inconclusive"]
    assert all(c["family_size"] == 3 for c in family)


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    values = [0.01, 0.03, 0.02, 0.05, 0.00]
    assert stats.bootstrap_ci(values) == stats.bootstrap_ci(list(values))
    low, high = stats.bootstrap_ci(values)
    assert low < np.mean(values) < high and low >= min(values) and high <= max(values)
    assert stats.bootstrap_ci(values, seed=1) != stats.bootstrap_ci(values, seed=2)
    assert stats.paired(*_arms(0.02)) == stats.paired(*_arms(0.02))


def test_conjunction_of_parts():
    assert stats.conjunction(["holds", "holds"]) == "holds"
    assert stats.conjunction(["holds", "inconclusive"]) == "inconclusive"
    assert stats.conjunction(["holds", "refuted"]) == "refuted"
    assert stats.conjunction([]) == "not tested"
    assert stats.conjunction(["holds", "inconclusive: not converged", "inconclusive"]) == "inconclusive: not converged"
    assert stats.conjunction(["refuted", "inconclusive: not converged"]) == "refuted"
    assert stats.agreement(["holds", "inconclusive", "refuted"]) == "contradictory"
    assert stats.agreement(["holds", "inconclusive"]) is None


def test_the_printed_ci_excludes_zero_exactly_when_the_test_rejects():
    for seed in range(200):
        a, b = _arms(0.003, seed=seed)
        c = stats.paired(a, b)
        assert (c["ci"][0] > 0 or c["ci"][1] < 0) == (c["p"] < 0.05), c
        d = np.array([a[s] - b[s] for s in range(5)])
        half = scipy_stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
        assert c["ci"] == pytest.approx([d.mean() - half, d.mean() + half], abs=2e-5)


def _with_correct(values: dict, correct: dict) -> stats.SeedValues:
    out = stats.SeedValues(values)
    out.correct = correct
    return out


def test_the_test_set_term_widens_a_difference_that_lives_in_few_samples():
    """Five seeds agree that a beats b, but only on 4-5 of 1000 test samples: another test set could lose them."""
    rng = np.random.default_rng(0)
    base = rng.random(1000) < 0.8
    a_correct, b_correct = {}, {}
    for s in range(5):
        a_correct[s] = base.copy()
        a_correct[s][np.flatnonzero(~base)[:4 + s % 2]] = True
        b_correct[s] = base.copy()
    a = _with_correct({s: c.mean() for s, c in a_correct.items()}, a_correct)
    b = _with_correct({s: c.mean() for s, c in b_correct.items()}, b_correct)
    seeds_only = stats.paired(dict(a), dict(b))
    both = stats.paired(a, b)
    assert seeds_only["p"] < 1e-4 and both["test_set_term"] and both["test_set_se"] > 0.0015
    assert both["p"] > 0.05 and both["ci"][0] < 0 < both["ci"][1] and stats.verdict(both) == "inconclusive"
    weighted = stats.contrast([(a, 0.5), (b, -0.5)])
    assert weighted["diff"] == pytest.approx(both["diff"] / 2) and weighted["p"] == pytest.approx(both["p"])


def test_rows_that_did_not_converge_decide_no_claim():
    a, b = _arms(0.02)
    a = stats.SeedValues(a)
    a.converged = False
    c = stats.paired(a, b)
    assert c["converged"] is False and c["p"] < 0.01
    assert stats.verdict(c) == "inconclusive: not converged" and stats.outcome(c) == "better"
