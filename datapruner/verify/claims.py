"""The papers' claims, tested on verify's result rows: one entry per (claim, budget_mode, balance).

Each entry: claim, paper, budget_mode, balance, verdict, test, parts (the contrasts the verdict rests on,
Holm-adjusted within the claim), numbers (the wider map the claim is read from) and, when not tested, why. The
rule is verify/stats.py's: every part carries the test-set term, a part whose rows did not all converge is
"inconclusive: not converged", a conjunction is refuted when any part is and holds when every part does; a trend
whose per-fraction parts are significant in opposite directions is "contradictory", and so is a claim that holds
in one budget and is refuted in the other (then `by_budget` shows both). Accuracies are compared, so a positive
difference is a lower error.

Sorscher et al. 2022 (Beyond neural scaling laws):
  crossover     keep hard samples when data is abundant, easy ones when it is scarce: proto_hard − proto_easy
                grows with the pool (per seed, the least-squares slope on log pool), at every pruned fraction where
                pruning costs accuracy in every pool (random significantly below the full pool: the regime the
                claim is about), pooled over those fractions; needs >= 2 pools.
  power law     pruning by a good metric (proto_hard) makes error fall faster with kept size than random pruning's
                power law as the pool grows at a fixed kept fraction: proto_hard's exponent across pools minus
                random's, per seed, pooled over every pruned fraction (powerlaw.fit_across_pools; >= 2 pools).
Ben-Baruch et al. (Distilling the knowledge in data pruning), KD with alpha chosen on validation ("val" rows):
  random wins   with KD, random pruning beats every score-based method at the smallest kept fraction.
  KD recovers   KD beats no KD for every method (per-seed gain averaged over the pruned fractions).
  alpha grows   a larger KD weight helps more as the kept fraction shrinks: per method, the interaction of the
                accuracy with alpha (>= 3 fixed weights, 0 included) and the fraction, tested against 0 (negative =
                the best weight grows); the chosen alpha of the "val" rows is reported beside it.
The KD claims use the largest pool (the paper prunes the whole training set).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from datapruner.verify import powerlaw, stats
from datapruner.verify.results import (FULL, NO_KD, REGIME_BELOW, accuracy_by_seed, compare_kd, index_rows,
                                       regimes)

VAL = "val"
SORSCHER, BEN_BARUCH = "Sorscher et al. 2022", "Ben-Baruch et al."
CLAIMS = {
    "crossover": (SORSCHER, "keep hard samples when data is abundant, easy ones when it is scarce"),
    "power_law": (SORSCHER, "a good metric (proto_hard) beats random's power-law scaling of error with kept size"),
    "random_wins": (BEN_BARUCH, "with KD (alpha on validation), random pruning beats score-based methods at small kept fractions"),
    "kd_recovers": (BEN_BARUCH, "KD (alpha on validation) recovers accuracy lost to pruning"),
    "alpha_grows": (BEN_BARUCH, "the best KD weight grows as the kept fraction shrinks"),
}
HARD, EASY = ("proto_hard", NO_KD), ("proto_easy", NO_KD)


class Slice:
    """The rows of one (budget_mode, balance), looked up by (pool, method, alpha_setting, fraction)."""

    def __init__(self, index: dict, budget: str, balance: str, regime: dict | None = None):
        self.budget, self.balance = budget, balance
        self.arms = {k[2:]: v for k, v in index.items() if k[:2] == (budget, balance)}
        self.pools = sorted({k[0] for k in self.arms})
        self.regime = {k[2:]: v for k, v in (regime or {}).items() if k[:2] == (budget, balance)}

    def arm(self, pool, method, alpha, fraction) -> dict[int, dict] | None:
        return self.arms.get((pool, method, alpha, fraction))

    def acc(self, pool, method, alpha, fraction) -> stats.SeedValues:
        return accuracy_by_seed(self.arm(pool, method, alpha, fraction))

    def fractions(self, pool, method, alpha) -> list[float]:
        return sorted(k[3] for k in self.arms if k[:3] == (pool, method, alpha))

    def pruned(self, pool, *arms: tuple[str, str]) -> list[float]:
        """Pruned fractions of `pool` where every (method, alpha) arm has rows."""
        sets = [set(self.fractions(pool, m, a)) for m, a in arms]
        return sorted(f for f in set.intersection(*sets) if f < FULL) if sets else []

    def methods(self, alpha) -> list[str]:
        return sorted({k[1] for k in self.arms if k[2] == alpha})

    def costly(self, pool, fraction) -> bool:
        """Does pruning to `fraction` cost accuracy here (random significantly below the full pool)?"""
        return self.regime.get((pool, fraction)) == REGIME_BELOW

    def fixed_alphas(self, pool, method) -> list[float]:
        return sorted({float(k[2]) for k in self.arms if k[:2] == (pool, method) and _is_number(k[2])})


def evaluate(rows: list[dict]) -> list[dict]:
    """Every claim for every (budget_mode, balance) in the rows."""
    index = index_rows(rows)
    across = powerlaw.fit_across_pools(rows)
    kd_all = compare_kd(index)
    regime = {tuple(r[k] for k in ("budget_mode", "balance", "pool", "fraction")): r["regime"] for r in regimes(index)}
    out = []
    for budget, balance in sorted({k[:2] for k in index}):
        s = Slice(index, budget, balance, regime)
        kd = [c for c in kd_all if (c["budget_mode"], c["balance"]) == (budget, balance)]
        for name, result in (("crossover", crossover(s)), ("power_law", power_law(s, across)),
                             ("random_wins", random_wins(s)), ("kd_recovers", kd_recovers(s, kd)),
                             ("alpha_grows", alpha_grows(s))):
            paper, claim = CLAIMS[name]
            out.append({"claim": claim, "name": name, "paper": paper, "budget_mode": budget, "balance": balance, **result})
    return across_budgets(out)


def across_budgets(claims: list[dict]) -> list[dict]:
    """A claim that holds in one budget and is refuted in another is contradictory in both; by_budget shows each."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in claims:
        groups[(c["name"], c["balance"])].append(c)
    for group in groups.values():
        if stats.agreement([c["verdict"] for c in group]):
            by_budget = {c["budget_mode"]: c["verdict"] for c in group}
            for c in group:
                c.update(verdict=stats.CONTRADICTORY, by_budget=by_budget)
    return claims


def crossover(s: Slice) -> dict:
    pools = [p for p in s.pools if s.pruned(p, HARD, EASY)]
    numbers = {"map_hard_minus_easy": _crossover_map(s, pools)}
    if len(pools) < 2:
        return _not_tested(f"needs proto_hard and proto_easy without KD in >= 2 pools, found {len(pools)}", numbers)
    shared = sorted(set.intersection(*(set(s.pruned(p, HARD, EASY)) for p in pools)))
    costly = [f for f in shared if all(s.costly(p, f) for p in pools)]
    numbers["fractions_where_pruning_costs_accuracy"] = costly
    if not costly:
        return _absent(f"pruning to {', '.join(f'{f:g}' for f in shared)} costs no significant accuracy in every "
                       f"pool {', '.join(f'{p:g}' for p in pools)}: neither scarce nor abundant regime is measured",
                       numbers)
    x = np.log(pools) - np.mean(np.log(pools))
    slope = x / (x ** 2).sum()
    terms = {f: [(s.acc(p, "proto_hard", NO_KD, f), w) for p, w in zip(pools, slope)]
             + [(s.acc(p, "proto_easy", NO_KD, f), -w) for p, w in zip(pools, slope)] for f in costly}
    return _trend(terms, "proto_hard − proto_easy grows with log pool", 1,
                  "per-seed slope of proto_hard − proto_easy accuracy (no KD) on log pool, at the fractions where "
                  "pruning costs accuracy in every pool; " + stats.TEST, numbers)


def _crossover_map(s: Slice, pools: list[float]) -> list[dict]:
    cells = [{"pool": p, "fraction": f, "kept": _kept(s.arm(p, "proto_hard", NO_KD, f)),
              **stats.paired(s.acc(p, "proto_hard", NO_KD, f), s.acc(p, "proto_easy", NO_KD, f))}
             for p in pools for f in s.pruned(p, HARD, EASY)]
    for c in stats.adjust_family(cells):
        c["verdict"] = {stats.HOLDS: "hard better", stats.REFUTED: "easy better"}.get(stats.significance(c), stats.INCONCLUSIVE)
    return cells


def power_law(s: Slice, across: list[dict]) -> dict:
    mine = [f for f in across if (f["budget_mode"], f["balance"]) == (s.budget, s.balance) and f["alpha_setting"] == NO_KD]
    table = [{"fraction": f["fraction"], "method": f["method"], "pools": f["pools"], "exponent": f["exponent"],
              "exponent_ci": f.get("exponent_ci"), **{k: v for k, v in f["vs_random"].items() if k != "test"}}
             for f in mine if (f.get("vs_random") or {}).get("diff") is not None]
    for c in stats.adjust_family(table):
        c["verdict"] = {stats.HOLDS: "steeper", stats.REFUTED: "shallower"}.get(stats.significance(c), stats.INCONCLUSIVE)
    numbers = {"exponent_minus_random_across_pools": table,
               "random": {f"{f['fraction']:g}": {"exponent": f["exponent"], "exponent_ci": f.get("exponent_ci")}
                          for f in mine if f["method"] == "random"}}
    fractions = sorted(c["fraction"] for c in table if c["method"] == "proto_hard")
    if not fractions:
        return _not_tested("needs proto_hard and random without KD at one pruned fraction in >= 2 pools (the claim is "
                           "about error against kept size as the pool grows)", numbers)
    parts = {f: _exponent_part(s, f) for f in fractions}
    return _trend_parts(parts, "proto_hard exponent > random's across pools", 1,
                        "per-seed exponent of error ~ kept^-b across pool sizes, proto_hard − random (no KD), at every "
                        "pruned fraction and pooled over them; the test-set term by the delta method; " + stats.TEST,
                        numbers)


def _exponent_part(s: Slice, fraction: float) -> tuple[dict, list[tuple], bool | None]:
    curve = lambda m: {p: a for p in s.pools if (a := s.arm(p, m, NO_KD, fraction))}  # noqa: E731
    hard, rnd = curve("proto_hard"), curve("random")
    diffs, terms, _ = powerlaw.exponent_contrast(hard, rnd)
    return diffs, terms, powerlaw.converged(hard, rnd)


def random_wins(s: Slice) -> dict:
    if not s.methods(VAL):
        return _not_tested("no rows with alpha_setting 'val' (KD weight chosen on the validation split)")
    pool = max(p for p in s.pools if any(k[0] == p and k[2] == VAL for k in s.arms))
    scored = [m for m in s.methods(VAL) if m != "random"]
    if "random" not in s.methods(VAL) or not scored:
        return _not_tested("needs random and at least one score-based method with alpha 'val'")
    numbers, parts = [], []
    for m in scored:
        fractions = s.pruned(pool, ("random", VAL), (m, VAL))
        for f in fractions:
            numbers.append({"pool": pool, "method": m, "fraction": f, **stats.paired(s.acc(pool, "random", VAL, f), s.acc(pool, m, VAL, f))})
        if fractions:
            f = fractions[0]
            parts.append(_part(f"random > {m} at fraction {f:g} (pool {pool:g})", 1,
                               stats.paired(s.acc(pool, "random", VAL, f), s.acc(pool, m, VAL, f))))
    for c in stats.adjust_family(numbers):
        c["verdict"] = stats.outcome(c)
    if not parts:
        return _not_tested("random and the score-based methods share no pruned fraction with alpha 'val'", {"random_minus_method": numbers})
    return _decide(parts, "random − method accuracy, both with KD (val alpha), smallest pruned fraction; " + stats.TEST
                   + "; every method must be beaten", {"random_minus_method": numbers})


def kd_recovers(s: Slice, kd_comparisons: list[dict]) -> dict:
    cells = [c for c in kd_comparisons if c["alpha_setting"] == VAL and c["fraction"] < FULL]
    if not cells:
        return _not_tested("no pruned rows with alpha_setting 'val' that have a no-KD counterpart")
    pool = max(c["pool"] for c in cells)
    cells = [c for c in cells if c["pool"] == pool]
    parts = []
    for m in sorted({c["method"] for c in cells}):
        fractions = sorted(c["fraction"] for c in cells if c["method"] == m)
        terms = [t for f in fractions for t in ((s.acc(pool, m, VAL, f), 1 / len(fractions)),
                                                (s.acc(pool, m, NO_KD, f), -1 / len(fractions)))]
        parts.append(_part(f"{m}: KD > no KD, mean over {len(fractions)} pruned fractions (pool {pool:g})", 1,
                           stats.contrast(terms)))
    closed = [c["gap_closed"] for c in cells if c.get("gap_closed") is not None]
    numbers = {"kd_minus_no_kd": [{k: c[k] for k in ("method", "fraction", "n", "diff", "ci", "p", "p_holm", "verdict", "gap_closed")}
                                  for c in cells],
               "gap_closed_median": None if not closed else round(float(np.median(closed)), 3)}
    return _decide(parts, "val-KD − no-KD accuracy per method (per-seed mean over pruned fractions); " + stats.TEST
                   + "; every method must gain", numbers)


def alpha_grows(s: Slice) -> dict:
    kd_pools = [p for p in s.pools if any(k[0] == p and _is_number(k[2]) and float(k[2]) > 0 for k in s.arms)]
    if not kd_pools:
        return _not_tested("no rows with a fixed KD weight > 0")
    pool, parts = max(kd_pools), []
    for m in s.methods(NO_KD):
        alphas = s.fixed_alphas(pool, m)
        fractions = sorted(set.intersection(*(set(s.fractions(pool, m, _label(a))) for a in alphas)))
        if len(alphas) >= 3 and len(fractions) >= 2:
            parts.append(_part(f"{m}: d²acc / d alpha d fraction < 0 over alphas {', '.join(f'{a:g}' for a in alphas)} "
                               f"(pool {pool:g})", -1, stats.contrast(_interaction(s, pool, m, alphas, fractions))))
    numbers = {"chosen_alpha_mean": _chosen_alpha(s, pool)}
    if not parts:
        return _not_tested("needs >= 3 fixed KD weights (0 included) at >= 2 fractions for a method", numbers)
    return _decide(parts, "per-seed interaction of accuracy with alpha and the kept fraction (least-squares slope on "
                   "alpha, then its slope on the fraction: negative = a larger weight helps more on smaller "
                   "subsets); " + stats.TEST + "; every method must show it", numbers)


def _interaction(s: Slice, pool, method, alphas: list[float], fractions: list[float]) -> list[tuple]:
    u = np.array(alphas) - np.mean(alphas)
    v = np.array(fractions) - np.mean(fractions)
    return [(s.acc(pool, method, _label(a), f), float(ua * vf / ((u ** 2).sum() * (v ** 2).sum())))
            for a, ua in zip(alphas, u) for f, vf in zip(fractions, v)]


def _chosen_alpha(s: Slice, pool) -> dict:
    return {m: {f"{f:g}": round(float(np.mean([float(r["alpha"]) for r in s.arm(pool, m, VAL, f).values()])), 4)
                for f in s.fractions(pool, m, VAL)} for m in s.methods(VAL)}


def _trend(terms_by_fraction: dict, label: str, direction: int, test: str, numbers: dict) -> dict:
    parts = {f: _contrast_parts(terms) for f, terms in terms_by_fraction.items()}
    return _trend_parts(parts, label, direction, test, numbers)


def _contrast_parts(terms: list[tuple]) -> tuple[dict, list[tuple], bool | None]:
    c = stats.contrast(terms)
    values = {s: sum(w * a[s] for a, w in terms) for s in c["seeds"]}
    return values, [(getattr(a, "correct", None), w) for a, w in terms], c["converged"]


def _trend_parts(parts: dict, label: str, direction: int, test: str, numbers: dict) -> dict:
    """One part per fraction and the pooled one (their mean); decided on the pooled part unless the fractions
    are significant in opposite directions (contradictory)."""
    seeds = sorted(set.intersection(*(set(d) for d, _, _ in parts.values())))
    n = len(parts)
    pooled_terms = [(c, w / n) for _, terms, _ in parts.values() for c, w in terms]
    pooled = _with_flag(stats.compare_diffs({s: float(np.mean([d[s] for d, _, _ in parts.values()])) for s in seeds},
                                            stats.weighted_test_set_se(pooled_terms, seeds)),
                        [conv for _, _, conv in parts.values()], pooled_terms)
    each = [_part(f"{label} at fraction {f:g}", direction, _with_flag(
        stats.compare_diffs(d, stats.weighted_test_set_se(terms, sorted(d))), [conv], terms)) for f, (d, terms, conv) in parts.items()]
    result = _decide([_part(f"{label}, pooled over fractions {', '.join(f'{f:g}' for f in parts)}", direction, pooled)]
                     + each, test, numbers)
    result["verdict"] = stats.agreement([p["verdict"] for p in each]) or result["parts"][0]["verdict"]
    return result


def _with_flag(comparison: dict, flags: list, terms: list[tuple]) -> dict:
    converged = False if False in flags else (True if all(f is True for f in flags) else None)
    return {**comparison, "converged": converged, "test_set_term": all(c for c, _ in terms)}


def _part(label: str, direction: int, comparison: dict) -> dict:
    return {"part": label, "direction": direction, **comparison}


def _decide(parts: list[dict], test: str, numbers: dict) -> dict:
    for p in stats.adjust_family(parts):
        p["verdict"] = stats.verdict(p, p["direction"])
    return {"verdict": stats.conjunction([p["verdict"] for p in parts]), "test": test, "parts": parts, "numbers": numbers}


def _not_tested(why: str, numbers: dict | None = None) -> dict:
    return {"verdict": stats.NOT_TESTED, "why": why, "test": None, "parts": [], "numbers": numbers or {}}


def _absent(why: str, numbers: dict) -> dict:
    return {"verdict": stats.INCONCLUSIVE, "why": why, "test": None, "parts": [], "numbers": numbers}


def _is_number(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True


def _label(alpha: float) -> str:
    return str(float(alpha))


def _kept(arm: dict[int, dict] | None) -> int | None:
    return None if not arm else int(np.median([r["kept"] for r in arm.values()]))
