"""The claims on synthetic result rows with a known, injected effect: detected (holds), absent (inconclusive),
reversed (refuted), one seed (inconclusive), missing data (not tested, with why)."""

import numpy as np

from datapruner.verify import claims

N = 8000
POOLS = (0.25, 0.5, 1.0)
FRACTIONS = (0.1, 0.3, 0.7, 1.0)
METHODS = ("random", "proto_hard", "proto_easy", "el2n")


def make_rows(gain=None, exponent=None, chosen_alpha=None, seeds=range(5), pools=POOLS, fractions=FRACTIONS,
              methods=METHODS, alphas=("0.0", "val"), noise=0.003, budget="convergence"):
    """Result rows: error = c · kept^-b (b = 0.3 unless `exponent[method]`), anchored at the full pool, plus
    gain(method, pool, fraction, alpha) accuracy on pruned subsets, a per-seed offset shared by every run of the
    seed (init and batch order) and per-run noise. Every method is the same run at fraction 1.0."""
    gain = gain or (lambda m, p, f, a: 0.0)
    exponent = exponent or {}
    chosen_alpha = chosen_alpha or (lambda m, p, f, s, rng: 0.5)
    rng = np.random.default_rng(7)
    rows, full = [], {}
    for seed in seeds:
        init = rng.normal(0, 0.01)
        for pool in pools:
            for a in alphas:
                full[(seed, pool, a)] = rng.normal(0, noise)
                for m in methods:
                    for f in fractions:
                        kept = int(N * pool * f)
                        err = 2.0 * (N * pool) ** -0.3 * f ** -exponent.get(m, 0.3)
                        acc = 1 - err + init + (full[(seed, pool, a)] if f == 1.0 else gain(m, pool, f, a) + rng.normal(0, noise))
                        alpha = 0.0 if a == "0.0" else (chosen_alpha(m, pool, f, seed, rng) if a == "val" else float(a))
                        rows.append({"budget_mode": budget, "pool": pool, "pool_size": int(N * pool), "method": m,
                                     "balance": "none", "fraction": f, "kept": kept, "kd": a != "0.0", "alpha_setting": a,
                                     "alpha": alpha, "seed": seed, "accuracy": acc, "error": 1 - acc,
                                     "val_accuracy": acc, "val_loss": 1.0, "converged": True, "steps": 100,
                                     "label_tv": 0.0 if f == 1.0 else 0.02, "classes_present": 10})
    return rows


def _claim(rows, name, budget="convergence"):
    found = [c for c in claims.evaluate(rows) if c["name"] == name and c["budget_mode"] == budget]
    assert len(found) == 1
    return found[0]


def test_random_with_kd_beating_every_score_method_is_detected():
    wins = make_rows(gain=lambda m, p, f, a: -0.02 if (a == "val" and m != "random") else 0.0)
    c = _claim(wins, "random_wins")
    assert c["verdict"] == "holds" and len(c["parts"]) == 3
    assert all(p["diff"] > 0.015 and p["p_holm"] < 0.05 for p in c["parts"])
    assert "fraction 0.1" in c["parts"][0]["part"] and c["test"]
    assert _claim(make_rows(), "random_wins")["verdict"] == "inconclusive"  # no effect
    loses = make_rows(gain=lambda m, p, f, a: 0.02 if (a == "val" and m == "el2n") else 0.0)
    assert _claim(loses, "random_wins")["verdict"] == "refuted"  # one method beats random: refuted
    assert _claim(make_rows(gain=lambda m, p, f, a: -0.05 if m != "random" else 0.0, seeds=[0]), "random_wins")["verdict"] == "inconclusive"


def test_crossover_needs_both_ends_and_two_pools():
    def crossing(m, p, f, a):
        if m == "proto_hard" and p == 1.0 and f == 0.7:
            return 0.02
        if m == "proto_easy" and p == 0.25 and f == 0.1:
            return 0.02
        return 0.0

    c = _claim(make_rows(gain=crossing), "crossover")
    assert c["verdict"] == "holds" and [p["verdict"] for p in c["parts"]] == ["holds", "holds"]
    cells = c["numbers"]["map_hard_minus_easy"]
    assert len(cells) == len(POOLS) * 3 and {x["verdict"] for x in cells} >= {"hard better", "easy better"}
    half = _claim(make_rows(gain=lambda m, p, f, a: crossing(m, p, f, a) if m == "proto_hard" else 0.0), "crossover")
    assert half["verdict"] == "inconclusive"
    reversed_ = _claim(make_rows(gain=lambda m, p, f, a: 0.02 if m == "proto_hard" else 0.0), "crossover")
    assert reversed_["verdict"] == "refuted"  # hard also wins when scarce: no crossover
    one_pool = _claim(make_rows(gain=crossing, pools=(1.0,)), "crossover")
    assert one_pool["verdict"] == "not tested" and ">= 2 pools" in one_pool["why"]


def test_kd_recovery_holds_per_method_and_is_refuted_when_kd_hurts_one():
    c = _claim(make_rows(gain=lambda m, p, f, a: 0.02 if a == "val" else 0.0), "kd_recovers")
    assert c["verdict"] == "holds" and len(c["parts"]) == len(METHODS)
    assert c["numbers"]["gap_closed_median"] > 0
    hurt = make_rows(gain=lambda m, p, f, a: (-0.03 if m == "proto_hard" else 0.02) if a == "val" else 0.0)
    assert _claim(hurt, "kd_recovers")["verdict"] == "refuted"
    assert _claim(make_rows(), "kd_recovers")["verdict"] == "inconclusive"


def test_alpha_trend_is_a_slope_test_that_can_go_either_way():
    def grows(m, p, f, s, rng):
        return float(np.clip(0.95 - 0.6 * f + rng.normal(0, 0.05), 0.1, 1.0))

    def shrinks(m, p, f, s, rng):
        return float(np.clip(0.3 + 0.6 * f + rng.normal(0, 0.05), 0.1, 1.0))

    assert _claim(make_rows(chosen_alpha=grows), "alpha_grows")["verdict"] == "holds"
    assert _claim(make_rows(chosen_alpha=shrinks), "alpha_grows")["verdict"] == "refuted"
    flat = _claim(make_rows(chosen_alpha=lambda m, p, f, s, rng: float(rng.choice([0.3, 0.5, 0.9]))), "alpha_grows")
    assert flat["verdict"] == "inconclusive"
    assert flat["numbers"]["chosen_alpha_mean"]["random"]


def test_power_law_is_read_across_pools_at_a_fixed_fraction():
    """err = c · pool^-0.3 · f^-b: along the fraction axis a bigger b is a worse curve; across pools at a fixed
    fraction, proto_hard falling faster (its error shrinking with the pool beyond random's) is the claim."""
    def faster(m, p, f, a):
        return 0.02 * (p - min(POOLS)) if m == "proto_hard" and a == "0.0" else 0.0

    def slower(m, p, f, a):
        return -0.02 * (p - min(POOLS)) if m == "proto_hard" and a == "0.0" else 0.0

    steeper = _claim(make_rows(gain=faster), "power_law")
    assert steeper["verdict"] == "holds"
    part = steeper["parts"][0]
    assert part["diff"] > 0 and part["ci_refit"][0] > 0 and "across pools" in part["part"]
    assert _claim(make_rows(gain=slower), "power_law")["verdict"] == "refuted"
    assert _claim(make_rows(), "power_law")["verdict"] == "inconclusive"
    worse_everywhere = _claim(make_rows(exponent={"proto_hard": 0.45}), "power_law")  # steeper along fractions only
    assert worse_everywhere["verdict"] == "inconclusive"
    table = steeper["numbers"]["exponent_minus_random_across_pools"]
    assert {x["method"] for x in table} == set(METHODS[1:])
    assert _claim(make_rows(pools=(1.0,)), "power_law")["verdict"] == "not tested"


def test_every_claim_is_reported_even_without_its_data():
    rows = make_rows(methods=("random", "el2n"), alphas=("0.0",), pools=(1.0,))
    rows += make_rows(methods=("random",), alphas=("0.0",), pools=(1.0,), budget="fixed_steps")
    found = claims.evaluate(rows)
    assert {(c["name"], c["budget_mode"]) for c in found} == {(n, b) for n in claims.CLAIMS for b in ("convergence", "fixed_steps")}
    for c in found:
        assert c["verdict"] == "not tested" and c["why"] and c["paper"]
