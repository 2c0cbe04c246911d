"""The results table (JSON + CSV), mean ± std over seeds, and tie-aware comparisons (DESIGN section 8)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from datapruner.io.atomic import atomic_path, write_json

COLUMNS = ("budget_mode", "method", "balance", "fraction", "kept", "kd", "alpha_setting", "alpha", "temperature",
           "seed", "accuracy", "error", "steps", "samples_seen", "epochs_on_subset", "full_data_passes", "regime",
           "smallest_class_share", "classes_present", "student", "teacher_accuracy", "train_seconds")
GROUP = ("budget_mode", "balance", "method", "alpha_setting", "fraction")
TIE_STDS = 2.0  # a difference smaller than this many (pooled) stds is a tie


def write_table(rows: list[dict], out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    write_json(out_dir / "results.json", rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out_dir / "results.csv") as tmp:
        tmp.write_text(buf.getvalue())
    return {"json": out_dir / "results.json", "csv": out_dir / "results.csv"}


def aggregate(rows: list[dict]) -> list[dict]:
    """One entry per (budget_mode, balance, method, alpha_setting, fraction): accuracy mean ± std over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in GROUP)].append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0][:4]) + (kv[0][4],)):
        acc = np.array([r["accuracy"] for r in members])
        out.append({**dict(zip(GROUP, key)), "kept": members[0]["kept"], "n_seeds": len(members),
                    "accuracy_mean": round(float(acc.mean()), 5), "accuracy_std": round(float(acc.std(ddof=1)) if len(acc) > 1 else 0.0, 5),
                    "smallest_class_share": round(float(np.mean([r["smallest_class_share"] for r in members])), 5),
                    "regime": members[0]["regime"], "full_data_passes": members[0]["full_data_passes"]})
    return out


def verdict(mean_a: float, std_a: float, mean_b: float, std_b: float) -> str:
    """"better" / "worse" when a differs from b by at least TIE_STDS pooled stds, else "tie"."""
    pooled = float(np.sqrt((std_a ** 2 + std_b ** 2) / 2))
    diff = mean_a - mean_b
    if abs(diff) < TIE_STDS * pooled or diff == 0:
        return "tie"
    return "better" if diff > 0 else "worse"


def _index(agg: list[dict]) -> dict[tuple, dict]:
    return {tuple(a[k] for k in GROUP): a for a in agg}


def compare_to_random(agg: list[dict]) -> list[dict]:
    """Each method against random at the same budget, balance, KD setting and fraction."""
    index, out = _index(agg), []
    for a in agg:
        ref = index.get((a["budget_mode"], a["balance"], "random", a["alpha_setting"], a["fraction"]))
        if a["method"] == "random" or ref is None:
            continue
        out.append({**{k: a[k] for k in GROUP}, "diff": round(a["accuracy_mean"] - ref["accuracy_mean"], 5),
                    "verdict": verdict(a["accuracy_mean"], a["accuracy_std"], ref["accuracy_mean"], ref["accuracy_std"])})
    return out


def compare_kd(agg: list[dict]) -> list[dict]:
    """Each KD setting against no KD (alpha 0) for the same method, budget, balance and fraction."""
    index, out = _index(agg), []
    for a in agg:
        ref = index.get((a["budget_mode"], a["balance"], a["method"], "0.0", a["fraction"]))
        if a["alpha_setting"] == "0.0" or ref is None:
            continue
        out.append({**{k: a[k] for k in GROUP}, "diff": round(a["accuracy_mean"] - ref["accuracy_mean"], 5),
                    "verdict": verdict(a["accuracy_mean"], a["accuracy_std"], ref["accuracy_mean"], ref["accuracy_std"])})
    return out


def best_alpha(agg: list[dict]) -> list[dict]:
    """Per budget, balance, method and fraction: the fixed alpha with the best mean accuracy (auto excluded)."""
    best: dict[tuple, dict] = {}
    for a in agg:
        if a["alpha_setting"] == "auto":
            continue
        key = (a["budget_mode"], a["balance"], a["method"], a["fraction"])
        if key not in best or a["accuracy_mean"] > best[key]["accuracy_mean"]:
            best[key] = a
    return [{"budget_mode": k[0], "balance": k[1], "method": k[2], "fraction": k[3], "best_alpha": float(v["alpha_setting"]),
             "accuracy_mean": v["accuracy_mean"]} for k, v in sorted(best.items(), key=lambda kv: tuple(map(str, kv[0])))]


def markdown_table(agg: list[dict]) -> str:
    """mean ± std per method and KD setting (rows) and fraction (columns), one table per budget mode."""
    fractions = sorted({a["fraction"] for a in agg})
    lines = []
    for budget in sorted({a["budget_mode"] for a in agg}):
        lines += [f"\n### {budget}\n", "| method | balance | KD alpha | " + " | ".join(f"{f:g}" for f in fractions) + " |",
                  "|---|---|---|" + "---|" * len(fractions)]
        cells: dict[tuple, dict] = defaultdict(dict)
        for a in agg:
            if a["budget_mode"] == budget:
                cells[(a["method"], a["balance"], a["alpha_setting"])][a["fraction"]] = a
        for (method, balance, alpha), by_f in sorted(cells.items()):
            vals = [f"{100 * by_f[f]['accuracy_mean']:.2f} ± {100 * by_f[f]['accuracy_std']:.2f}" if f in by_f else "" for f in fractions]
            lines.append(f"| {method} | {balance} | {alpha} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
