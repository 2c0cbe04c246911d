"""The papers' claims, tested on verify's result rows: one entry per (claim, budget_mode, balance).

Each entry: claim, paper, budget_mode, balance, verdict (holds / refuted / inconclusive / not tested), test,
parts (the paired comparisons the verdict rests on, Holm-adjusted within the claim), numbers (the wider map the
claim is read from) and, when not tested, why. The verdict rule is verify/stats.py's: a claim made of several
parts is refuted when any part is, holds when every part does, else inconclusive. Accuracies are compared, so a
positive difference is a lower error.

Sorscher et al. 2022 (Beyond neural scaling laws):
  crossover     keep hard samples when data is abundant, easy ones when it is scarce: proto_hard beats proto_easy
                at the largest pool's largest pruned fraction, and proto_easy beats proto_hard at the smallest
                pool's smallest fraction (needs >= 2 pools); numbers: hard − easy for every pool × fraction.
  power law     pruning by a good metric (proto_hard: keep hard, SSL prototypes) makes error fall faster with kept
                size than random pruning's power law, as the pool grows at a fixed kept fraction: at the smallest
                pruned fraction, proto_hard's exponent across pools above random's (paired over per-seed exponents);
                numbers: every metric × fraction (powerlaw.fit_across_pools; needs >= 2 pools).
Ben-Baruch et al. (Distilling the knowledge in data pruning), KD with alpha chosen on validation ("val" rows):
  random wins   with KD, random pruning beats every score-based method at the smallest kept fraction.
  KD recovers   KD beats no KD for every method (per-seed gain averaged over the pruned fractions); numbers: each
                method × fraction with the share of the gap to the full pool that KD closes.
  alpha grows   the chosen KD weight grows as the kept fraction shrinks: per seed, the slope of the chosen alpha
                against the fraction, tested against 0 (negative = grows), per method.
The KD claims use the largest pool (the paper prunes the whole training set).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from datapruner.verify import powerlaw, stats
from datapruner.verify.results import FULL, NO_KD, accuracy_by_seed, compare_kd, index_rows

VAL = "val"
SORSCHER, BEN_BARUCH = "Sorscher et al. 2022", "Ben-Baruch et al."
CLAIMS = {
    "crossover": (SORSCHER, "keep hard samples when data is abundant, easy ones when it is scarce"),
    "power_law": (SORSCHER, "a good metric (proto_hard) beats random's power-law scaling of error with kept size"),
    "random_wins": (BEN_BARUCH, "with KD (alpha on validation), random pruning beats score-based methods at small kept fractions"),
    "kd_recovers": (BEN_BARUCH, "KD (alpha on validation) recovers accuracy lost to pruning"),
    "alpha_grows": (BEN_BARUCH, "the best KD weight grows as the kept fraction shrinks"),
}


class Slice:
    """The rows of one (budget_mode, balance), looked up by (pool, method, alpha_setting, fraction)."""

    def __init__(self, index: dict, budget: str, balance: str):
        self.budget, self.balance = budget, balance
        self.arms = {k[2:]: v for k, v in index.items() if k[:2] == (budget, balance)}
        self.pools = sorted({k[0] for k in self.arms})

    def arm(self, pool, method, alpha, fraction) -> dict[int, dict] | None:
        return self.arms.get((pool, method, alpha, fraction))

    def acc(self, pool, method, alpha, fraction) -> dict[int, float]:
        return accuracy_by_seed(self.arm(pool, method, alpha, fraction))

    def fractions(self, pool, method, alpha) -> list[float]:
        return sorted(k[3] for k in self.arms if k[:3] == (pool, method, alpha))

    def pruned(self, pool, *arms: tuple[str, str]) -> list[float]:
        """Pruned fractions of `pool` where every (method, alpha) arm has rows."""
        sets = [set(self.fractions(pool, m, a)) for m, a in arms]
        return sorted(f for f in set.intersection(*sets) if f < FULL) if sets else []

    def methods(self, alpha) -> list[str]:
        return sorted({k[1] for k in self.arms if k[2] == alpha})


def evaluate(rows: list[dict]) -> list[dict]:
    """Every claim for every (budget_mode, balance) in the rows."""
    index = index_rows(rows)
    across = powerlaw.fit_across_pools(rows)
    kd_all = compare_kd(index)
    out = []
    for budget, balance in sorted({k[:2] for k in index}):
        s = Slice(index, budget, balance)
        kd = [c for c in kd_all if (c["budget_mode"], c["balance"]) == (budget, balance)]
        for name, result in (("crossover", crossover(s)), ("power_law", power_law(s, across)),
                             ("random_wins", random_wins(s)), ("kd_recovers", kd_recovers(s, kd)),
                             ("alpha_grows", alpha_grows(s))):
            paper, claim = CLAIMS[name]
            out.append({"claim": claim, "name": name, "paper": paper, "budget_mode": budget, "balance": balance, **result})
    return out


def crossover(s: Slice) -> dict:
    hard, easy = ("proto_hard", NO_KD), ("proto_easy", NO_KD)
    pools = [p for p in s.pools if s.pruned(p, hard, easy)]
    cells = []
    for p in pools:
        for f in s.pruned(p, hard, easy):
            cells.append({"pool": p, "fraction": f, "kept": _kept(s.arm(p, "proto_hard", NO_KD, f)),
                          **stats.paired(s.acc(p, "proto_hard", NO_KD, f), s.acc(p, "proto_easy", NO_KD, f))})
    for c in stats.adjust_family(cells):
        c["verdict"] = {stats.HOLDS: "hard better", stats.REFUTED: "easy better"}.get(stats.verdict(c), stats.INCONCLUSIVE)
    numbers = {"map_hard_minus_easy": cells}
    if len(pools) < 2:
        return _not_tested(f"needs proto_hard and proto_easy without KD in >= 2 pools, found {len(pools)}", numbers)
    big, small = max(pools), min(pools)
    f_big, f_small = max(s.pruned(big, hard, easy)), min(s.pruned(small, hard, easy))
    parts = [_part(f"hard > easy at pool {big:g}, fraction {f_big:g}", 1,
                   stats.paired(s.acc(big, "proto_hard", NO_KD, f_big), s.acc(big, "proto_easy", NO_KD, f_big))),
             _part(f"easy > hard at pool {small:g}, fraction {f_small:g}", -1,
                   stats.paired(s.acc(small, "proto_hard", NO_KD, f_small), s.acc(small, "proto_easy", NO_KD, f_small)))]
    return _decide(parts, "proto_hard − proto_easy accuracy, no KD; " + stats.TEST + "; both parts must hold", numbers)


def power_law(s: Slice, across: list[dict]) -> dict:
    mine = [f for f in across if (f["budget_mode"], f["balance"]) == (s.budget, s.balance) and f["alpha_setting"] == NO_KD]
    table = []
    for f in mine:
        vs = f.get("vs_random")
        if vs and vs.get("diff") is not None:
            table.append({"fraction": f["fraction"], "method": f["method"], "pools": f["pools"], "exponent": f["exponent"],
                          "exponent_ci": f.get("exponent_ci"), **{k: v for k, v in vs.items() if k != "test"}})
    for c in stats.adjust_family(table):
        c["verdict"] = {stats.HOLDS: "steeper", stats.REFUTED: "shallower"}.get(stats.verdict(c), stats.INCONCLUSIVE)
    numbers = {"exponent_minus_random_across_pools": table,
               "random": {f"{f['fraction']:g}": {"exponent": f["exponent"], "exponent_ci": f.get("exponent_ci")}
                          for f in mine if f["method"] == "random"}}
    hard = [c for c in table if c["method"] == "proto_hard"]
    if not hard:
        return _not_tested("needs proto_hard and random without KD at one pruned fraction in >= 2 pools (the claim is "
                           "about error against kept size as the pool grows)", numbers)
    top = min(hard, key=lambda c: c["fraction"])
    part = _part(f"proto_hard exponent > random's across pools {', '.join(f'{p:g}' for p in top['pools'])} at "
                 f"fraction {top['fraction']:g}", 1, {k: top[k] for k in ("n", "seeds", "diff", "ci", "t", "p", "mean_a", "mean_b")})
    part["ci_refit"] = top.get("ci_refit")
    return _decide([part], "per-seed exponent of error ~ kept^-b across pool sizes at the smallest pruned fraction, "
                   "proto_hard − random, no KD; " + stats.TEST, numbers)


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
        gains: dict[int, list[float]] = defaultdict(list)
        for f in sorted(c["fraction"] for c in cells if c["method"] == m):
            kd, plain = s.acc(pool, m, VAL, f), s.acc(pool, m, NO_KD, f)
            for seed in set(kd) & set(plain):
                gains[seed].append(kd[seed] - plain[seed])
        n_f = max(len(g) for g in gains.values())
        parts.append(_part(f"{m}: KD > no KD, mean over {n_f} pruned fractions (pool {pool:g})", 1,
                           stats.compare_diffs({seed: float(np.mean(g)) for seed, g in gains.items() if len(g) == n_f})))
    closed = [c["gap_closed"] for c in cells if c.get("gap_closed") is not None]
    numbers = {"kd_minus_no_kd": [{k: c[k] for k in ("method", "fraction", "n", "diff", "ci", "p", "p_holm", "verdict", "gap_closed")}
                                  for c in cells],
               "gap_closed_median": None if not closed else round(float(np.median(closed)), 3)}
    return _decide(parts, "val-KD − no-KD accuracy per method (per-seed mean over pruned fractions); " + stats.TEST
                   + "; every method must gain", numbers)


def alpha_grows(s: Slice) -> dict:
    if not s.methods(VAL):
        return _not_tested("no rows with alpha_setting 'val' (KD weight chosen on the validation split)")
    pool = max(p for p in s.pools if any(k[0] == p and k[2] == VAL for k in s.arms))
    parts, chosen = [], {}
    for m in s.methods(VAL):
        fractions = s.fractions(pool, m, VAL)
        by_seed: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for f in fractions:
            for seed, row in s.arm(pool, m, VAL, f).items():
                by_seed[seed].append((f, float(row["alpha"])))
        chosen[m] = {f"{f:g}": round(float(np.mean([float(r["alpha"]) for r in s.arm(pool, m, VAL, f).values()])), 4) for f in fractions}
        slopes = {seed: float(np.polyfit(*zip(*pts), 1)[0]) for seed, pts in by_seed.items() if len({f for f, _ in pts}) >= 2}
        if slopes:
            parts.append(_part(f"{m}: d alpha / d fraction < 0 (pool {pool:g})", -1, stats.compare_diffs(slopes)))
    numbers = {"chosen_alpha_mean": chosen}
    if not parts:
        return _not_tested("the 'val' rows span fewer than 2 fractions", numbers)
    return _decide(parts, "per-seed least-squares slope of the chosen alpha on the kept fraction, one-sample t-test"
                   " against 0 (two-sided), Holm over methods, level 0.05; every method must show it", numbers)


def _part(label: str, direction: int, comparison: dict) -> dict:
    return {"part": label, "direction": direction, **comparison}


def _decide(parts: list[dict], test: str, numbers: dict) -> dict:
    for p in stats.adjust_family(parts):
        p["verdict"] = stats.verdict(p, p["direction"])
    return {"verdict": stats.conjunction([p["verdict"] for p in parts]), "test": test, "parts": parts, "numbers": numbers}


def _not_tested(why: str, numbers: dict | None = None) -> dict:
    return {"verdict": stats.NOT_TESTED, "why": why, "test": None, "parts": [], "numbers": numbers or {}}


def _kept(arm: dict[int, dict] | None) -> int | None:
    return None if not arm else int(np.median([r["kept"] for r in arm.values()]))
