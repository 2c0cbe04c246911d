"""Markdown tables of a verify run, generated from its result rows and claims (docs/verify-study.md comes from here).

markdown(rows, claims): the claims table (verdict, test, numbers), then per (budget, balance, pool) every method ×
alpha_setting row (with and without KD) × fraction as "mean ± CI half-width" (test accuracy, %, the t interval
over seeds with the test-set term, verify/stats.py), the measured regime per fraction, the subsets' label TV distance and classes, the chosen alpha of the
"val" rows, the crossover map and the power-law exponents. Every aggregate entry is a cell of some table.
Within a table the random baseline comes first, then the methods from the worst against random to the best.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from datapruner.verify import powerlaw
from datapruner.verify.results import FULL, NO_KD, aggregate, comparisons

NOT_CONVERGED = "†"
BETTER, WORSE, KD_UP, KD_DOWN = "▲", "▼", "↑", "↓"
LEGEND = (f"Cells: test accuracy %, mean ± half-width of the 95 % t interval over seeds (the test set's sampling "
          f"variance included). {BETTER}/{WORSE}: significantly above/below random at the same KD setting; "
          f"{KD_UP}/{KD_DOWN}: significantly above/below the same method without KD (paired t-test over seeds with the "
          f"test-set term, Holm within the table's family, p < 0.05); {NOT_CONVERGED}: not every seed converged (the "
          f"budget ended while the validation loss still improved); no claim reads such a cell.")


def markdown(rows: list[dict], claims: list[dict]) -> str:
    agg = aggregate(rows)
    comp = comparisons(rows)
    marks = _marks(comp)
    parts = ["## Claims\n", claims_table(claims)]
    for budget, balance, pool in sorted({(a["budget_mode"], a["balance"], a["pool"]) for a in agg}):
        entries = [a for a in agg if (a["budget_mode"], a["balance"], a["pool"]) == (budget, balance, pool)]
        parts.append(results_section(entries, marks, comp["vs_random"]))
    parts.append(crossover_tables(claims))
    parts.append(exponent_table(powerlaw.fit_across_pools(rows), across_pools=True))
    parts.append(exponent_table(powerlaw.fit_all(rows)))
    return "\n".join(p for p in parts if p)


def claims_table(claims: list[dict]) -> str:
    lines = ["| claim | paper | budget | balance | verdict | test | numbers |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        numbers = c.get("why") if not c["parts"] else "; ".join(_part_text(p, c["name"]) for p in c["parts"])
        if c.get("by_budget"):
            numbers = "budgets disagree: " + ", ".join(f"{b} {v}" for b, v in c["by_budget"].items()) + "; " + numbers
        if c["numbers"].get("gap_closed_median") is not None:
            numbers += f"; median share of the gap to the full pool that KD closes: {c['numbers']['gap_closed_median']:.2f}"
        lines.append(f"| {c['claim']} | {c['paper']} | {c['budget_mode']} | {c['balance']} | **{c['verdict']}** | "
                     f"{c.get('test') or ''} | {_escape(numbers)} |")
    return "\n".join(lines) + "\n"


def results_section(entries: list[dict], marks: dict, vs_random: list[dict]) -> str:
    first = entries[0]
    budget, balance, pool = first["budget_mode"], first["balance"], first["pool"]
    fractions = sorted({a["fraction"] for a in entries})
    seeds = sorted({a["n_seeds"] for a in entries})
    title = (f"### {budget} budget, pool {pool:g} ({first.get('pool_size') or '?'} samples), balance {balance}, "
             f"{seeds[0]}{'' if len(seeds) == 1 else '–%d' % seeds[-1]} seeds\n")
    header = "| method | KD alpha | " + " | ".join(f"{f:g}" for f in fractions) + " |"
    lines = [title, LEGEND + "\n", header, "|---|---|" + "---|" * len(fractions)]
    lines.append("| *regime: random vs full pool* | 0.0 | " + " | ".join(_regime(entries, f) for f in fractions) + " |")
    cells: dict[tuple, dict] = defaultdict(dict)
    for a in entries:
        cells[(a["method"], a["alpha_setting"])][a["fraction"]] = a
    for method, alpha in _row_order(cells, vs_random, budget, balance, pool):
        by_f = cells[(method, alpha)]
        row = [_cell(by_f[f], marks) if f in by_f else "" for f in fractions]
        lines.append(f"| {method} | {alpha} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n\n" + subsets_table(entries, fractions) + chosen_alpha_table(entries, fractions)


def subsets_table(entries: list[dict], fractions: list[float]) -> str:
    """The kept subsets (no KD rows; KD does not change a subset): kept, label TV distance, classes present."""
    by_method: dict[str, dict] = defaultdict(dict)
    for a in entries:
        if a["alpha_setting"] == NO_KD:
            by_method[a["method"]][a["fraction"]] = a
    if not by_method:
        return ""
    lines = ["Subsets: kept samples (median) · label TV distance to the pool (mean) · classes present (fewest) over seeds\n",
             "| method | " + " | ".join(f"{f:g}" for f in fractions) + " |", "|---|" + "---|" * len(fractions)]
    for method, by_f in sorted(by_method.items(), key=lambda kv: (kv[0] != "random", kv[0])):
        lines.append(f"| {method} | " + " | ".join(_subset_cell(by_f.get(f)) for f in fractions) + " |")
    return "\n".join(lines) + "\n\n"


def chosen_alpha_table(entries: list[dict], fractions: list[float]) -> str:
    val = [a for a in entries if a["alpha_setting"] == "val"]
    if not val:
        return ""
    lines = ["Chosen KD alpha of the 'val' rows (mean over seeds)\n",
             "| method | " + " | ".join(f"{f:g}" for f in fractions) + " |", "|---|" + "---|" * len(fractions)]
    by_method: dict[str, dict] = defaultdict(dict)
    for a in val:
        by_method[a["method"]][a["fraction"]] = a["alpha_mean"]
    for method, by_f in sorted(by_method.items()):
        lines.append(f"| {method} | " + " | ".join("" if by_f.get(f) is None else f"{by_f[f]:.2f}" for f in fractions) + " |")
    return "\n".join(lines) + "\n\n"


def crossover_tables(claims: list[dict]) -> str:
    """Sorscher's crossover map: proto_hard − proto_easy accuracy (pt) per pool × fraction, per budget."""
    out = []
    for c in claims:
        cells = c["numbers"].get("map_hard_minus_easy") if c.get("name") == "crossover" else None
        if not cells:
            continue
        fractions = sorted({x["fraction"] for x in cells})
        out += [f"### crossover map, {c['budget_mode']} budget, balance {c['balance']}: proto_hard − proto_easy "
                f"(accuracy pt, ± CI half-width; {BETTER} hard better, {WORSE} easy better)\n",
                "| pool | " + " | ".join(f"{f:g}" for f in fractions) + " |", "|---|" + "---|" * len(fractions)]
        by_pool: dict[float, dict] = defaultdict(dict)
        for x in cells:
            by_pool[x["pool"]][x["fraction"]] = x
        for pool in sorted(by_pool):
            out.append(f"| {pool:g} | " + " | ".join(_diff_cell(by_pool[pool].get(f)) for f in fractions) + " |")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def exponent_table(fits: list[dict], across_pools: bool = False) -> str:
    """Power-law exponents b of error ~ a·kept^-b with the t interval of the per-seed exponents, and the difference
    to random's with its test's interval and unadjusted p: along the fractions of one pool, or (across_pools)
    along the pools at one kept fraction."""
    rows = [f for f in fits if f.get("exponent") is not None]
    if not rows:
        return ""
    axis, col = ("fraction", "kept fraction") if across_pools else ("pool", "pool")
    title = ("across pool sizes at a fixed kept fraction (the axis of the power-law claim)" if across_pools
             else "along the kept fractions of one pool")
    lines = [f"### power-law exponents {title} (error ~ a · kept^-b, 95 % t interval over per-seed exponents)\n",
             f"| budget | balance | {col} | method | KD alpha | b [CI] | b − random's [CI], unadjusted p (paired t on per-seed b, test-set term) | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for f in sorted(rows, key=lambda f: (f["budget_mode"], f["balance"], f[axis], f["method"] != "random", f["method"], f["alpha_setting"])):
        vs = f.get("vs_random") or {}
        diff = "" if vs.get("diff") is None else f"{vs['diff']:+.3f} {_ci_text(vs.get('ci'), 1)}, p {_p_text(vs['p'])}"
        lines.append(f"| {f['budget_mode']} | {f['balance']} | {f[axis]:g} | {f['method']} | {f['alpha_setting']} | "
                     f"{f['exponent']:.3f} {_ci_text(f.get('exponent_ci'), 1)} | {diff} | {f.get('n_seeds', '')} |")
    return "\n".join(lines) + "\n"


def _marks(comp: dict) -> dict[tuple, str]:
    marks: dict[tuple, str] = defaultdict(str)
    for c, good, bad in [(c, BETTER, WORSE) for c in comp["vs_random"]] + [(c, KD_UP, KD_DOWN) for c in comp["kd_vs_no_kd"]]:
        key = (c["budget_mode"], c["balance"], c["pool"], c["method"], c["alpha_setting"], c["fraction"])
        marks[key] += {"better": good, "worse": bad}.get(c["verdict"], "")
    return marks


def _row_order(cells: dict, vs_random: list[dict], budget, balance, pool) -> list[tuple]:
    """random first, then methods by their mean difference to random without KD (most against pruning first)."""
    diffs: dict[str, list[float]] = defaultdict(list)
    for c in vs_random:
        if (c["budget_mode"], c["balance"], c["pool"], c["alpha_setting"]) == (budget, balance, pool, NO_KD) and c["diff"] is not None:
            diffs[c["method"]].append(c["diff"])
    score = {m: (m != "random", float(np.mean(d)) if (d := diffs.get(m)) else 0.0, m) for m, _ in cells}
    return sorted(cells, key=lambda k: (score[k[0]], _alpha_order(k[1])))


def _alpha_order(alpha: str):
    try:
        return (0, float(alpha), "")
    except ValueError:
        return (1, 0.0, alpha)


def _cell(a: dict, marks: dict) -> str:
    low, high = a["accuracy_ci"]
    half = 0.0 if low is None else 100 * (high - low) / 2
    key = (a["budget_mode"], a["balance"], a["pool"], a["method"], a["alpha_setting"], a["fraction"])
    flag = NOT_CONVERGED if a.get("converged_share") is not None and a["converged_share"] < 1 else ""
    return f"{100 * a['accuracy_mean']:.2f} ± {half:.2f}{marks.get(key, '')}{flag}"


def _regime(entries: list[dict], fraction: float) -> str:
    if fraction == FULL:
        return "full pool"
    hit = [a for a in entries if a["fraction"] == fraction and a["method"] == "random" and a["alpha_setting"] == NO_KD]
    if not hit:
        return "untested"
    p = hit[0].get("regime_p_holm")
    return hit[0]["regime"] + ("" if p is None else f" (p_holm {_p_text(p)})")


def _subset_cell(a: dict | None) -> str:
    if a is None:
        return ""
    tv = "" if a.get("label_tv_mean") is None else f" · TV {a['label_tv_mean']:.3f}"
    classes = "" if a.get("classes_present") is None else f" · {a['classes_present']} cls"
    return f"{a['kept']}{tv}{classes}"


def _diff_cell(x: dict | None) -> str:
    if x is None or x.get("diff") is None:
        return ""
    low, high = x["ci"]
    mark = {"hard better": BETTER, "easy better": WORSE}.get(x.get("verdict"), "")
    return f"{100 * x['diff']:+.2f} ± {100 * (high - low) / 2:.2f}{mark}"


def _part_text(p: dict, claim_name: str) -> str:
    scale, unit = (1.0, "") if claim_name in ("power_law", "alpha_grows") else (100.0, " pt")
    if p.get("diff") is None:
        return f"{p['part']}: no shared seeds → {p['verdict']}"
    return (f"{p['part']}: Δ={scale * p['diff']:+.3g}{unit} {_ci_text(p.get('ci'), scale)}, n={p['n']}, "
            f"p_holm {_p_text(p['p_holm'])} → {p['verdict']}")


def _p_text(p: float) -> str:
    return "< 1e-6" if p < 1e-6 else f"= {p:.2g}"


def _ci_text(ci, scale: float) -> str:
    if not ci or ci[0] is None:
        return ""
    return f"[{scale * ci[0]:.3g}, {scale * ci[1]:.3g}]"


def _escape(text: str | None) -> str:
    return (text or "").replace("|", "\\|")
