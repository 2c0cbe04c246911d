"""verify's outputs in one folder: the result rows (verify/results.py) with their aggregate, power-law fits,
comparisons, claims, markdown summary and plots.

Apart from results.py because it reads the claims, fits and tables, which are built on results.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datapruner.io.atomic import atomic_path, save_npy, write_json
from datapruner.verify import claims, plots, powerlaw, tables
from datapruner.verify.results import (CORRECT, CORRECT_FILE, aggregate, comparisons, with_correct, with_regime,
                                       write_table)


def publish(rows: list[dict], out_dir: str | Path, teacher_accuracy: float | None = None,
            correct: np.ndarray | None = None) -> dict:
    """Write results.json/csv (the rows with their measured regime), aggregate.json, power_law.json, comparisons.json, claims.json, summary.md and the
    plots into out_dir; return the paths and one line per claim."""
    out_dir = Path(out_dir)
    rows = with_correct(rows, correct)
    paths = write_table([{k: v for k, v in r.items() if k != CORRECT} for r in with_regime(rows)], out_dir)
    if correct is not None:
        save_npy(out_dir / CORRECT_FILE, np.packbits(correct, axis=1))
        paths["test_correct"] = out_dir / CORRECT_FILE
    agg = aggregate(rows)
    fits = powerlaw.fit_all(rows)
    verdicts = claims.evaluate(rows)
    for name, obj in (("aggregate", agg), ("power_law", fits + powerlaw.fit_across_pools(rows)), ("comparisons", comparisons(rows)), ("claims", verdicts)):
        write_json(out_dir / f"{name}.json", obj)
        paths[name] = out_dir / f"{name}.json"
    teacher = "" if teacher_accuracy is None else f"teacher accuracy: {100 * teacher_accuracy:.2f}%\n\n"
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(f"# verify\n\n{teacher}{tables.markdown(rows, verdicts)}")
    paths["summary_md"] = out_dir / "summary.md"
    figures = plots.write_plots(agg, fits, out_dir, teacher_accuracy)
    return {"files": {k: str(v) for k, v in paths.items()}, "figures": [str(p) for p in figures],
            "claims": [{k: c.get(k) for k in ("claim", "budget_mode", "balance", "verdict")} for c in verdicts]}
