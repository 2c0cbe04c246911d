"""Results table, aggregate with regime, paired comparisons, power-law fits with CIs, markdown tables, publish."""

import csv
import json
import re

import numpy as np
import pytest
from test_claims import FRACTIONS, METHODS, POOLS, make_rows

from datapruner.verify import claims, powerlaw, results, tables
from datapruner.verify.publish import publish


def _saturating(m, p, f, a):
    """Pruning to 0.7 costs nothing (error back to the full pool's): random@0.7 is not below full."""
    return 2.0 * (8000 * p) ** -0.3 * (0.7 ** -0.3 - 1) if f == 0.7 else 0.0


def test_write_table_has_every_row_and_the_new_columns(tmp_path):
    rows = make_rows(pools=(1.0,))
    paths = results.write_table(rows, tmp_path)
    with paths["csv"].open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) and tuple(table[0]) == results.COLUMNS
    assert {"pool", "converged", "label_tv", "val_accuracy"} <= set(table[0])


def test_aggregate_groups_seeds_and_measures_the_regime():
    rows = make_rows(gain=_saturating)
    rows[0]["converged"] = False  # random, pool 0.25, fraction 0.1, no KD, seed 0
    agg = results.aggregate(rows)
    assert len(agg) == len(POOLS) * len(METHODS) * len(FRACTIONS) * 2 and all(a["n_seeds"] == 5 for a in agg)
    at = {(a["pool"], a["method"], a["alpha_setting"], a["fraction"]): a for a in agg}
    first = at[(0.25, "random", "0.0", 0.1)]
    assert first["converged_share"] == pytest.approx(0.8) and first["label_tv_mean"] == pytest.approx(0.02)
    assert first["accuracy_ci"][0] < first["accuracy_mean"] < first["accuracy_ci"][1]
    assert first["regime"] == "below full" and first["regime_p_holm"] < 0.05
    assert at[(0.25, "random", "0.0", 0.7)]["regime"] == "not distinguishable from full"
    assert at[(1.0, "el2n", "val", 1.0)]["regime"] == "full pool"


def test_a_method_on_two_embeddings_is_two_rows_not_one():
    ssl = [{**r, "embedding": "ssl"} for r in make_rows(pools=(1.0,), methods=("random", "proto_hard"), alphas=("0.0",))]
    pca = [{**r, "embedding": "pca", "accuracy": r["accuracy"] - 0.05} for r in ssl if r["method"] == "proto_hard"]
    agg = results.aggregate(ssl + pca)
    names = {a["method"] for a in agg}
    assert names == {"random", "proto_hard", "proto_hard [pca]"} and all(a["n_seeds"] == 5 for a in agg)
    vs = {(c["method"], c["fraction"]): c["verdict"] for c in results.comparisons(ssl + pca)["vs_random"]}
    assert vs[("proto_hard [pca]", 0.3)] == "worse"


def test_comparisons_are_paired_and_holm_adjusted_per_family():
    rows = make_rows(gain=lambda m, p, f, a: 0.02 if m == "proto_hard" else 0.0)
    comp = results.comparisons(rows)
    vs = {(c["pool"], c["method"], c["alpha_setting"], c["fraction"]): c for c in comp["vs_random"]}
    assert len(vs) == len(POOLS) * 3 * 3 * 2  # 3 methods × 3 pruned fractions × 2 KD settings; not at 1.0
    assert vs[(1.0, "proto_hard", "0.0", 0.3)]["verdict"] == "better"
    assert vs[(1.0, "el2n", "0.0", 0.3)]["verdict"] == "inconclusive"
    assert all(c["family_size"] == 9 and c["p_holm"] >= c["p"] for c in vs.values())
    kd = [c for c in comp["kd_vs_no_kd"] if c["fraction"] < 1.0]
    assert kd and all(c["verdict"] == "inconclusive" for c in kd)


def test_power_law_fit_recovers_exponent():
    n = np.array([100, 200, 400, 800, 1600])
    fit = powerlaw.fit_power_law(n, 3.0 * n ** -0.4)
    assert fit["exponent"] == pytest.approx(0.4, abs=1e-4) and fit["r2"] == pytest.approx(1.0)
    assert fit["local_exponents"] == pytest.approx([0.4] * 4, abs=1e-4)


def test_power_law_fits_from_rows_carry_the_tests_intervals():
    rows = make_rows(exponent={"proto_hard": 0.5}, alphas=("0.0",))
    fits = powerlaw.fit_all(rows)
    assert fits == powerlaw.fit_all(rows)
    by = {(f["pool"], f["method"]): f for f in fits}
    rnd, hard = by[(1.0, "random")], by[(1.0, "proto_hard")]
    assert rnd["exponent_ci"][0] < 0.3 < rnd["exponent_ci"][1] and len(rnd["exponent_by_seed"]) == 5
    assert hard["vs_random"]["diff"] == pytest.approx(0.2, abs=0.03) and hard["vs_random"]["ci"][0] > 0
    assert hard["vs_random"]["p"] < 0.05 and hard["vs_random"]["converged"] is True
    assert "vs_random" not in rnd
    agg_fits = powerlaw.fit_all(results.aggregate(rows))  # point fits from the aggregate still work
    assert {(f["pool"], f["method"]) for f in agg_fits} == set(by)


def test_markdown_publishes_every_aggregate_entry_and_flags_non_converged():
    rows = make_rows(gain=_saturating)
    rows += make_rows(budget="fixed_steps", pools=(1.0,), methods=("random", "dbp"), alphas=("0.0", "0.5"))
    rows[1]["converged"] = False  # random, pool 0.25, fraction 0.3, no KD, seed 0
    found = claims.evaluate(rows)
    md = tables.markdown(rows, found)
    agg = results.aggregate(rows)
    cells = re.findall(r"\| \d+\.\d\d ± \d+\.\d\d", md)
    assert len(cells) == len(agg)  # one cell per aggregate entry, none dropped
    assert len(re.findall(r"\d\.\d\d[▲▼↑↓]*†", md)) == 1  # the one cell with a seed that did not converge
    assert "| random | 0.0 | " in md and "| dbp | 0.5 | " in md and "fixed_steps budget, pool 1" in md
    assert md.count("**") == 2 * len(found) and "crossover map" in md and "power-law exponents" in md
    assert "not distinguishable from full" in md


def test_publish_writes_every_output(tmp_path):
    rows = make_rows(pools=(0.5, 1.0), fractions=(0.3, 1.0), methods=("random", "proto_hard", "proto_easy"), seeds=range(3))
    out = publish(rows, tmp_path, teacher_accuracy=0.9)
    for name in ("results.json", "results.csv", "aggregate.json", "power_law.json", "comparisons.json", "claims.json", "summary.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(out["figures"]) == 5 and all((tmp_path / p).exists() for p in out["figures"])
    assert {c["verdict"] for c in out["claims"]} <= {"holds", "refuted", "inconclusive", "not tested"}
    assert "teacher accuracy: 90.00%" in (tmp_path / "summary.md").read_text()
    published = json.loads((tmp_path / "results.json").read_text())
    assert len(published) == len(rows) and {r["regime"] for r in published} <= {"below full", "full pool", "not distinguishable from full"}
    assert {r["regime"] for r in published if r["fraction"] == 0.3} == {"below full"}


def test_the_exponent_test_carries_the_test_set_term():
    rows = make_rows(exponent={"proto_hard": 0.5}, alphas=("0.0",))
    plain = {(f["pool"], f["method"]): f for f in powerlaw.fit_all(rows)}[(1.0, "proto_hard")]["vs_random"]
    rng, n_test = np.random.default_rng(0), 2000
    for r in rows:  # each student right on round(accuracy · n_test) random test samples
        r[results.CORRECT] = np.zeros(n_test, bool)
        r[results.CORRECT][rng.permutation(n_test)[:round(r["accuracy"] * n_test)]] = True
    widened = {(f["pool"], f["method"]): f for f in powerlaw.fit_all(rows)}[(1.0, "proto_hard")]["vs_random"]
    assert not plain["test_set_term"] and widened["test_set_term"] and widened["test_set_se"] > 0
    assert widened["diff"] == plain["diff"] and widened["p"] > plain["p"]
    assert widened["ci"][1] - widened["ci"][0] > plain["ci"][1] - plain["ci"][0]
