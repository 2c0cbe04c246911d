"""The claims on synthetic result rows with a known, injected effect: detected (holds), absent (inconclusive),
reversed (refuted), one seed (inconclusive), rows not converged (inconclusive: not converged), parts or budgets
that disagree (contradictory), missing data (not tested, with why)."""

import numpy as np

from datapruner.verify import claims

N = 8000
POOLS = (0.25, 0.5, 1.0)
FRACTIONS = (0.1, 0.3, 0.7, 1.0)
METHODS = ("random", "proto_hard", "proto_easy", "el2n")


def make_rows(gain=None, exponent=None, chosen_alpha=None, seeds=range(5), pools=POOLS, fractions=FRACTIONS,
              methods=METHODS, alphas=("0.0", "val"), noise=0.003, budget="convergence", converged=None):
    """Result rows: error = c · kept^-b (b = 0.3 unless `exponent[method]`), anchored at the full pool, plus
    gain(method, pool, fraction, alpha) accuracy on pruned subsets, a per-seed offset shared by every run of the
    seed (init and batch order) and per-run noise. Every method is the same run at fraction 1.0."""
    gain = gain or (lambda m, p, f, a: 0.0)
    exponent = exponent or {}
    chosen_alpha = chosen_alpha or (lambda m, p, f, s, rng: 0.5)
    converged = converged or (lambda m, p, f, a: True)
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
                                     "val_accuracy": acc, "val_loss": 1.0, "converged": converged(m, pool, f, a), "steps": 100,
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
    assert all(p["diff"] > 0.015 and p["p_holm"] < 0.05 and p["ci"][0] > 0 for p in c["parts"])
    assert "fraction 0.1" in c["parts"][0]["part"] and c["test"]
    assert _claim(make_rows(), "random_wins")["verdict"] == "inconclusive"  # no effect
    loses = make_rows(gain=lambda m, p, f, a: 0.02 if (a == "val" and m == "el2n") else 0.0)
    assert _claim(loses, "random_wins")["verdict"] == "refuted"  # one method beats random: refuted
    assert _claim(make_rows(gain=lambda m, p, f, a: -0.05 if m != "random" else 0.0, seeds=[0]), "random_wins")["verdict"] == "inconclusive"


def test_a_claim_on_rows_that_did_not_converge_is_not_decided():
    wins = make_rows(gain=lambda m, p, f, a: -0.02 if (a == "val" and m != "random") else 0.0,
                     converged=lambda m, p, f, a: not (a == "val" and f == 0.1 and m == "el2n"))
    c = _claim(wins, "random_wins")
    assert c["verdict"] == "inconclusive: not converged"
    assert [p["verdict"] for p in c["parts"]] == ["inconclusive: not converged", "holds", "holds"]


def crossing(m, p, f, a, at=FRACTIONS):
    """hard better in the largest pool, easy better in the smallest, at the fractions `at`."""
    if f not in at or f == 1.0:
        return 0.0
    return 0.02 * ((m == "proto_hard" and p == 1.0) or (m == "proto_easy" and p == 0.25))


def test_crossover_is_a_trend_across_pools_where_pruning_costs_accuracy():
    c = _claim(make_rows(gain=crossing), "crossover")
    assert c["verdict"] == "holds" and "pooled over fractions 0.1, 0.3, 0.7" in c["parts"][0]["part"]
    assert c["numbers"]["fractions_where_pruning_costs_accuracy"] == [0.1, 0.3, 0.7]
    cells = c["numbers"]["map_hard_minus_easy"]
    assert len(cells) == len(POOLS) * 3 and {x["verdict"] for x in cells} >= {"hard better", "easy better"}
    reversed_ = _claim(make_rows(gain=lambda m, p, f, a: crossing({"proto_hard": "proto_easy", "proto_easy": "proto_hard"}.get(m, m), p, f, a)), "crossover")
    assert reversed_["verdict"] == "refuted"
    assert _claim(make_rows(), "crossover")["verdict"] == "inconclusive"
    both_ways = make_rows(gain=lambda m, p, f, a: crossing(m, p, f, a, (0.1,)) - crossing(m, p, f, a, (0.7,)))
    assert _claim(both_ways, "crossover")["verdict"] == "contradictory"
    one_pool = _claim(make_rows(gain=crossing, pools=(1.0,)), "crossover")
    assert one_pool["verdict"] == "not tested" and ">= 2 pools" in one_pool["why"]


def test_crossover_without_the_regime_it_is_about_is_inconclusive():
    flat = make_rows(gain=crossing, exponent={"random": 0.0})  # random loses nothing to pruning anywhere
    c = _claim(flat, "crossover")
    assert c["verdict"] == "inconclusive" and "neither scarce nor abundant" in c["why"]


def test_kd_recovery_holds_per_method_and_is_refuted_when_kd_hurts_one():
    c = _claim(make_rows(gain=lambda m, p, f, a: 0.02 if a == "val" else 0.0), "kd_recovers")
    assert c["verdict"] == "holds" and len(c["parts"]) == len(METHODS)
    assert c["numbers"]["gap_closed_median"] > 0
    hurt = make_rows(gain=lambda m, p, f, a: (-0.03 if m == "proto_hard" else 0.02) if a == "val" else 0.0)
    assert _claim(hurt, "kd_recovers")["verdict"] == "refuted"
    assert _claim(make_rows(), "kd_recovers")["verdict"] == "inconclusive"


def test_the_kd_weight_claim_is_the_accuracy_interaction_over_three_weights():
    alphas = ("0.0", "0.5", "0.9", "val")
    helps_small = lambda m, p, f, a: 0.04 * float(a) * (1 - f) if a != "val" else 0.0  # noqa: E731
    c = _claim(make_rows(gain=helps_small, alphas=alphas), "alpha_grows")
    assert c["verdict"] == "holds" and all(p["diff"] < 0 for p in c["parts"]) and len(c["parts"]) == len(METHODS)
    helps_large = lambda m, p, f, a: -helps_small(m, p, f, a)  # noqa: E731
    assert _claim(make_rows(gain=helps_large, alphas=alphas), "alpha_grows")["verdict"] == "refuted"
    flat = _claim(make_rows(alphas=alphas), "alpha_grows")
    assert flat["verdict"] == "inconclusive" and flat["numbers"]["chosen_alpha_mean"]["random"]
    two = _claim(make_rows(gain=helps_small, alphas=("0.0", "0.9", "val")), "alpha_grows")
    assert two["verdict"] == "not tested" and ">= 3 fixed KD weights" in two["why"]


def faster(m, p, f, a, at=FRACTIONS):
    return 0.02 * (p - min(POOLS)) if m == "proto_hard" and a == "0.0" and f in at else 0.0


def test_power_law_is_read_across_pools_at_every_fraction():
    """err = c · pool^-0.3 · f^-b: along the fraction axis a bigger b is a worse curve; across pools at a fixed
    fraction, proto_hard falling faster (its error shrinking with the pool beyond random's) is the claim."""
    steeper = _claim(make_rows(gain=faster), "power_law")
    assert steeper["verdict"] == "holds"
    pooled, *each = steeper["parts"]
    assert pooled["diff"] > 0 and pooled["ci"][0] > 0 and "pooled over fractions 0.1, 0.3, 0.7" in pooled["part"]
    assert [p["part"].rsplit(" ", 1)[-1] for p in each] == ["0.1", "0.3", "0.7"]
    slower = make_rows(gain=lambda m, p, f, a: -faster(m, p, f, a))
    assert _claim(slower, "power_law")["verdict"] == "refuted"
    assert _claim(make_rows(), "power_law")["verdict"] == "inconclusive"
    worse_everywhere = _claim(make_rows(exponent={"proto_hard": 0.45}), "power_law")  # steeper along fractions only
    assert worse_everywhere["verdict"] == "inconclusive"
    both_ways = make_rows(gain=lambda m, p, f, a: faster(m, p, f, a, (0.1,)) - faster(m, p, f, a, (0.7,)))
    assert _claim(both_ways, "power_law")["verdict"] == "contradictory"
    table = steeper["numbers"]["exponent_minus_random_across_pools"]
    assert {x["method"] for x in table} == set(METHODS[1:])
    assert _claim(make_rows(pools=(1.0,)), "power_law")["verdict"] == "not tested"


def test_budgets_that_disagree_make_the_claim_contradictory_and_show_both():
    rows = make_rows(gain=faster) + make_rows(gain=lambda m, p, f, a: -faster(m, p, f, a), budget="fixed_steps")
    for budget in ("convergence", "fixed_steps"):
        c = _claim(rows, "power_law", budget)
        assert c["verdict"] == "contradictory"
        assert c["by_budget"] == {"convergence": "holds", "fixed_steps": "refuted"}


def test_every_claim_is_reported_even_without_its_data():
    rows = make_rows(methods=("random", "el2n"), alphas=("0.0",), pools=(1.0,))
    rows += make_rows(methods=("random",), alphas=("0.0",), pools=(1.0,), budget="fixed_steps")
    found = claims.evaluate(rows)
    assert {(c["name"], c["budget_mode"]) for c in found} == {(n, b) for n in claims.CLAIMS for b in ("convergence", "fixed_steps")}
    for c in found:
        assert c["verdict"] == "not tested" and c["why"] and c["paper"]
