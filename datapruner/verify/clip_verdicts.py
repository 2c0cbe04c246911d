"""verify --task clip's comparisons and verdicts, recomputable from its output folder alone.

For every held-out metric (zero-shot accuracy, image→text and text→image recall@1/5) and every pruned arm:
  beats_random   method − random at the same fraction and KD setting (no KD, and each KD weight)
  vs_full        method − the full pool's CLIP (no KD): pruning loses nothing when this is not below 0
  kd_recovers    the arm with KD − the same arm without
Each is verify/stats.py's paired t-test over seeds, with the test-set term (every student's per-sample
correctness is kept), Holm-adjusted within its family (one claim × metric × KD weight). The printed CI is
the test's own: mean ± t(0.975, n−1) · the same standard error, so it excludes 0 exactly when the unadjusted
test rejects. A comparison whose arms have a student that did not converge (its held-out loss still fell
by CONVERGED_DROP over the budget's last quarter) is "inconclusive: not converged" whatever its p.
Every comparison is published; in each table the rows that go against pruning (lowest difference) come first.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from datapruner.verify import stats
from datapruner.verify.clip_eval import METRICS

NOT_CONVERGED = "inconclusive: not converged"
CORRECT_FILE = "test_correct.npz"
CLAIMS = {"beats_random": "the method beats random pruning at the same kept fraction",
          "vs_full": "the pruned subset loses nothing against the full pool (refuted: it is worse)",
          "kd_recovers": "KD from the full pool's CLIP recovers accuracy lost to pruning"}


def arms(rows: list[dict]) -> dict[tuple, dict[int, dict]]:
    """(method, fraction, alpha) -> {seed: row}."""
    out: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        out[(r["method"], float(r["fraction"]), float(r["alpha"]))][r["seed"]] = r
    return dict(out)


def values(arm: dict[int, dict], metric: str, correct: dict) -> stats.SeedValues:
    out = stats.SeedValues({s: float(r[metric]) for s, r in arm.items()})
    out.correct = {s: correct[r["student_id"]][metric] for s, r in arm.items()}
    return out


def compare(a: dict, b: dict, metric: str, correct: dict) -> dict:
    """a − b paired over seeds, with the test's t interval and whether both arms converged."""
    c = stats.paired(values(a, metric, correct), values(b, metric, correct))
    c["ci"] = t_interval(a, b, metric, correct, c)
    c["ci_kind"] = "t interval of the test (seeds + test-set term)"
    c["p_label"] = "unadjusted p (p_holm: Holm within the family)"
    c["converged"] = all(r.get("converged") is not False for arm in (a, b) for r in arm.values())
    return c


def t_interval(a: dict, b: dict, metric: str, correct: dict, c: dict) -> list:
    from scipy import stats as sps

    seeds = c["seeds"]
    if len(seeds) < 2:
        return [None, None]
    d = np.array([a[s][metric] - b[s][metric] for s in seeds], np.float64)
    extra = stats.test_set_se({s: correct[a[s]["student_id"]][metric] for s in seeds},
                              {s: correct[b[s]["student_id"]][metric] for s in seeds}, seeds)
    half = sps.t.ppf(1 - (1 - stats.CI) / 2, len(seeds) - 1) * math.sqrt(d.var(ddof=1) / len(seeds) + extra ** 2)
    return [round(float(d.mean() - half), 5), round(float(d.mean() + half), 5)]


def comparisons(rows: list[dict], correct: dict) -> list[dict]:
    """Every comparison of every claim and metric, with verdicts (see the module docstring)."""
    index = arms(rows)
    families: dict[tuple, list[dict]] = defaultdict(list)
    for (method, fraction, alpha), arm in index.items():
        if fraction >= 1.0:
            continue
        pairs = {"beats_random": index.get(("random", fraction, alpha)) if method != "random" else None,
                 "vs_full": index.get((method, 1.0, 0.0)) if alpha == 0 else None,
                 "kd_recovers": index.get((method, fraction, 0.0)) if alpha > 0 else None}
        for claim, ref in pairs.items():
            for metric in METRICS if ref else ():
                families[(claim, metric, alpha)].append(
                    {"claim": claim, "metric": metric, "method": method, "fraction": fraction, "alpha": alpha,
                     **compare(arm, ref, metric, correct)})
    out = []
    for key in sorted(families, key=str):
        for c in stats.adjust_family(families[key]):
            c["verdict"] = NOT_CONVERGED if not c["converged"] else stats.verdict(c)
            out.append(c)
    return sorted(out, key=lambda c: (c["claim"], c["metric"], c["alpha"], c["diff"] if c["diff"] is not None else 0))


def claims(comps: list[dict]) -> list[dict]:
    """One verdict per (claim, metric, method, alpha) over its fractions (every part must hold)."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for c in comps:
        grouped[(c["claim"], c["metric"], c["method"], c["alpha"])].append(c)
    out = []
    for (claim, metric, method, alpha), parts in sorted(grouped.items(), key=lambda kv: str(kv[0])):
        verdicts = [p["verdict"] for p in parts]
        verdict = stats.conjunction([stats.INCONCLUSIVE if v == NOT_CONVERGED else v for v in verdicts])
        if verdict == stats.INCONCLUSIVE and NOT_CONVERGED in verdicts:
            verdict = NOT_CONVERGED
        out.append({"claim": claim, "statement": CLAIMS[claim], "metric": metric, "method": method, "alpha": alpha,
                    "verdict": verdict, "test": stats.TEST + " (+ test-set term); every fraction must hold",
                    "fractions": {f"{p['fraction']:g}": p["verdict"] for p in parts}})
    return out


def publish(out: Path, rows: list[dict], correct: dict, summary: dict) -> dict:
    """results.json/csv, test_correct.npz, comparisons.json, claims.json, summary.json and summary.md in `out`."""
    from datapruner.io.atomic import write_json, write_text
    from datapruner.verify.clip_tables import markdown, write_csv

    write_json(out / "results.json", rows)
    write_csv(out / "results.csv", rows)
    _save_correct(out / CORRECT_FILE, correct)
    comps = comparisons(rows, correct)
    verdicts = claims(comps)
    write_json(out / "comparisons.json", comps)
    write_json(out / "claims.json", verdicts)
    files = [str(out / n) for n in ("results.json", "results.csv", CORRECT_FILE, "comparisons.json", "claims.json",
                                    "summary.md", "summary.json")]
    full = {**summary, "rows": len(rows), "students_trained": len(correct), "claims": verdicts, "files": files,
            "students_not_converged": sum(1 for r in rows if r.get("converged") is False)}
    write_json(out / "summary.json", full)
    write_text(out / "summary.md", markdown(rows, comps, verdicts, summary))
    return full


def _save_correct(path: Path, correct: dict) -> None:
    """Per metric, one packed row of per-held-out-sample correctness per student id (0, 1, ...)."""
    import io

    from datapruner.io.atomic import atomic_path

    buf = io.BytesIO()
    ids = sorted(correct)
    np.savez_compressed(buf, **{m: np.packbits(np.stack([correct[i][m] for i in ids]), axis=1) for m in METRICS})
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def read_results(out: str | Path) -> tuple[list[dict], dict]:
    """An output folder's rows and {student id: {metric: per-sample correctness}}."""
    out = Path(out)
    rows = json.loads((out / "results.json").read_text())
    n_test = json.loads((out / "summary.json").read_text())["n_test"]
    packed = np.load(out / CORRECT_FILE)
    bits = {m: np.unpackbits(packed[m], axis=1)[:, :n_test].astype(bool) for m in METRICS}
    return rows, {i: {m: bits[m][i] for m in METRICS} for i in range(len(bits[METRICS[0]]))}


def recompute(out: str | Path) -> tuple[list[dict], list[dict]]:
    """The comparisons and claims, recomputed from the folder's results.json and test_correct.npz."""
    rows, correct = read_results(out)
    comps = comparisons(rows, correct)
    return comps, claims(comps)
