"""Results table, mean ± std, ties, power-law fits, claims."""

import numpy as np
import pytest

from datapruner.verify import claims, powerlaw, results


def _rows():
    rows = []
    for method, gain in (("random", 0.0), ("proto_hard", 0.05)):
        for f in (0.1, 0.5, 1.0):
            for seed in (0, 1, 2):
                for alpha in ("0.0", "auto"):
                    acc = 0.9 - 0.2 * (1 - f) + (gain if f < 1 else 0) + 0.001 * seed + (0.02 if alpha == "auto" and f < 1 else 0)
                    rows.append({"budget_mode": "fixed_epochs", "method": method, "balance": "none", "fraction": f,
                                 "kept": int(1000 * f), "alpha_setting": alpha, "seed": seed, "accuracy": acc,
                                 "smallest_class_share": 0.1, "regime": "data-limited", "full_data_passes": 2.0})
    return rows


def test_aggregate_and_table(tmp_path):
    rows = _rows()
    paths = results.write_table(rows, tmp_path)
    assert paths["csv"].read_text().count("\n") == len(rows) + 1
    agg = results.aggregate(rows)
    assert len(agg) == 2 * 3 * 2 and all(a["n_seeds"] == 3 for a in agg)
    vs_random = {(c["method"], c["alpha_setting"], c["fraction"]): c["verdict"] for c in results.compare_to_random(agg)}
    assert vs_random[("proto_hard", "0.0", 0.1)] == "better" and vs_random[("proto_hard", "0.0", 1.0)] == "tie"
    assert "| proto_hard | none | 0.0 |" in results.markdown_table(agg)


def test_ties_within_two_stds():
    assert results.verdict(0.80, 0.01, 0.79, 0.01) == "tie"
    assert results.verdict(0.80, 0.01, 0.75, 0.01) == "better"
    assert results.verdict(0.70, 0.0, 0.75, 0.0) == "worse"


def test_power_law_fit_recovers_exponent_and_curvature():
    n = np.array([100, 200, 400, 800, 1600])
    fit = powerlaw.fit_power_law(n, 3.0 * n ** -0.4)
    assert fit["exponent"] == pytest.approx(0.4, abs=1e-4) and fit["r2"] == pytest.approx(1.0)
    assert fit["local_exponents"] == pytest.approx([0.4] * 4, abs=1e-4)
    bending = powerlaw.fit_power_law(n, np.exp(-0.05 * np.log(n) ** 2))  # bends down in log-log
    assert bending["faster_than_power_law"] is True and bending["curvature"] < 0


def test_claims_read_off_the_aggregate():
    agg = results.aggregate(_rows())
    fits = powerlaw.fit_all(agg)
    found = {c["claim"].split(":")[0] + c["claim"][-12:]: c for c in claims.evaluate(agg, fits, results.best_alpha(agg))}
    kd = [c for c in found.values() if "recovers" in c["claim"]][0]
    assert kd["holds"] is True and kd["better"] == 4
