"""Reading the published claims off a verify run's aggregate table (mean ± std over seeds, tie-aware).

Sorscher et al. 2022: a good metric makes error fall faster than a power law; keep hard samples when data is
abundant, easy ones when scarce. Ben-Baruch et al.: KD from a full-data teacher recovers much of what pruning
loses; with KD even random pruning is competitive; the best KD weight grows as the kept fraction shrinks.
"""

from __future__ import annotations

from datapruner.verify.results import GROUP, verdict

NO_KD = "0.0"


def _at(index: dict, budget, balance, method, alpha, fraction):
    return index.get((budget, balance, method, alpha, fraction))


def _cmp(a: dict | None, b: dict | None) -> str | None:
    if a is None or b is None:
        return None
    return verdict(a["accuracy_mean"], a["accuracy_std"], b["accuracy_mean"], b["accuracy_std"])


def hard_vs_easy(index: dict, budget: str, balance: str, fractions: list[float]) -> dict:
    """proto_hard vs proto_easy (no KD) at the largest pruned fraction and at the smallest one."""
    pruned = [f for f in fractions if f < 1.0]
    if not pruned:
        return {"holds": None}
    big, small = max(pruned), min(pruned)
    at_big = _cmp(_at(index, budget, balance, "proto_hard", NO_KD, big), _at(index, budget, balance, "proto_easy", NO_KD, big))
    at_small = _cmp(_at(index, budget, balance, "proto_easy", NO_KD, small), _at(index, budget, balance, "proto_hard", NO_KD, small))
    holds = None if None in (at_big, at_small) else (at_big != "worse" and at_small != "worse" and "better" in (at_big, at_small))
    return {"hard_vs_easy_at_%g" % big: at_big, "easy_vs_hard_at_%g" % small: at_small, "holds": holds}


def never_worse_than_random(index: dict, budget: str, balance: str, method: str, fractions: list[float]) -> bool:
    """A "good metric": not worse than random (no KD) at any pruned fraction."""
    return all(_cmp(_at(index, budget, balance, method, NO_KD, f), _at(index, budget, balance, "random", NO_KD, f)) != "worse"
               for f in fractions if f < 1.0)


def power_law(fits: list[dict], index: dict, budget: str, balance: str, fractions: list[float]) -> dict:
    """Exponents (no KD) per method; the claim holds when a good metric's error bends below a power law
    (negative log-log curvature) with a steeper exponent than random's."""
    mine = {f["method"]: f for f in fits if f["budget_mode"] == budget and f["balance"] == balance and f["alpha_setting"] == NO_KD}
    out = {m: {"exponent": f["exponent"], "faster_than_power_law": f.get("faster_than_power_law"),
               "never_worse_than_random": m == "random" or never_worse_than_random(index, budget, balance, m, fractions)}
           for m, f in mine.items()}
    good = [m for m, f in mine.items() if m != "random" and f.get("faster_than_power_law") and out[m]["never_worse_than_random"]
            and (mine.get("random", {}).get("exponent") or 0) < (f["exponent"] or 0)]
    return {"per_method": out, "methods_beating_random_and_power_law": good, "holds": bool(good) if mine else None}


def kd_recovery(index: dict, budget: str, balance: str, methods: list[str], fractions: list[float], kd: str) -> dict:
    """Per method and pruned fraction: KD vs no KD, and the share of the gap to full data that KD closes."""
    out = {}
    for method in methods:
        full = _at(index, budget, balance, method, NO_KD, 1.0)
        for f in (f for f in fractions if f < 1.0):
            plain, distilled = _at(index, budget, balance, method, NO_KD, f), _at(index, budget, balance, method, kd, f)
            if plain is None or distilled is None:
                continue
            gap = None if full is None else full["accuracy_mean"] - plain["accuracy_mean"]
            closed = None if not gap or gap <= 0 else round((distilled["accuracy_mean"] - plain["accuracy_mean"]) / gap, 3)
            out[f"{method}@{f:g}"] = {"verdict": _cmp(distilled, plain), "gap_closed": closed}
    verdicts = [v["verdict"] for v in out.values()]
    return {"per_setting": out, "better": verdicts.count("better"), "tie": verdicts.count("tie"),
            "worse": verdicts.count("worse"), "holds": None if not verdicts else verdicts.count("better") > verdicts.count("worse")}


def kd_random_competitive(index: dict, budget: str, balance: str, methods: list[str], fractions: list[float], kd: str) -> dict:
    """With KD: is random pruning tied with or better than every metric at every pruned fraction?"""
    out = {}
    for f in (f for f in fractions if f < 1.0):
        rnd = _at(index, budget, balance, "random", kd, f)
        for method in methods:
            if method != "random":
                out[f"{method}@{f:g}"] = _cmp(_at(index, budget, balance, method, kd, f), rnd)
    beaten = [k for k, v in out.items() if v == "better"]
    return {"metric_vs_random": out, "random_beaten_by": beaten, "holds": None if not out else not beaten}


def alpha_trend(best: list[dict], index: dict, budget: str, balance: str) -> dict:
    """The best fixed alpha per pruned fraction, per method: does it grow (weakly) as the fraction shrinks?

    Holds when the best alpha is non-increasing in the fraction, not constant, and at some fraction the
    best KD student beats plain CE beyond a tie (otherwise the ordering is noise).
    """
    out = {}
    for method in sorted({b["method"] for b in best}):
        seq = sorted((b["fraction"], b["best_alpha"]) for b in best if b["budget_mode"] == budget
                     and b["balance"] == balance and b["method"] == method and b["fraction"] < 1.0)
        if len(seq) < 2:
            continue
        alphas = [a for _, a in seq]
        beats_ce = {f"{f:g}": _cmp(_at(index, budget, balance, method, str(float(a)), f),
                                   _at(index, budget, balance, method, NO_KD, f)) for f, a in seq}
        trend = all(x >= y for x, y in zip(alphas, alphas[1:])) and alphas[0] > alphas[-1]
        out[method] = {"best_alpha_by_fraction": {f"{f:g}": a for f, a in seq}, "best_vs_no_kd": beats_ce,
                       "grows_as_fraction_shrinks": trend, "holds": trend and "better" in beats_ce.values()}
    return {"per_method": out, "holds": None if not out else all(v["holds"] for v in out.values())}


def evaluate(agg: list[dict], fits: list[dict], best: list[dict]) -> list[dict]:
    """One entry per (claim, budget mode, balance)."""
    index = {tuple(a[k] for k in GROUP): a for a in agg}
    methods = sorted({a["method"] for a in agg})
    fractions = sorted({a["fraction"] for a in agg})
    kd_settings = sorted({a["alpha_setting"] for a in agg} - {NO_KD})
    kd = "auto" if "auto" in kd_settings else (kd_settings[-1] if kd_settings else None)
    out = []
    for budget, balance in sorted({(a["budget_mode"], a["balance"]) for a in agg}):
        where = {"budget_mode": budget, "balance": balance}
        out.append({"claim": "sorscher: metric error falls faster than a power law", **where, **power_law(fits, index, budget, balance, fractions)})
        out.append({"claim": "sorscher: keep hard when abundant, easy when scarce", **where, **hard_vs_easy(index, budget, balance, fractions)})
        if kd is None:
            continue
        out.append({"claim": f"ben-baruch: KD (alpha={kd}) recovers accuracy lost to pruning", **where,
                    **kd_recovery(index, budget, balance, methods, fractions, kd)})
        out.append({"claim": f"ben-baruch: with KD (alpha={kd}) random pruning is competitive", **where,
                    **kd_random_competitive(index, budget, balance, methods, fractions, kd)})
        if len([s for s in kd_settings if s != "auto"]) >= 2:
            out.append({"claim": "ben-baruch: best KD weight grows as the kept fraction shrinks", **where,
                        **alpha_trend(best, index, budget, balance)})
    return out
