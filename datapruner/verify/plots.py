"""Matplotlib figures of a verify run: accuracy vs kept fraction per method (with and without KD), and
error vs kept size in log-log space with the fitted power laws."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from datapruner.report.plots import pyplot, save_figure


def _figure_groups(agg: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for a in agg:
        groups[(a["budget_mode"], a["balance"])].append(a)
    return groups


def _curves(entries: list[dict], key: str) -> dict[str, list[dict]]:
    curves: dict[str, list[dict]] = defaultdict(list)
    for a in entries:
        curves[a[key]].append(a)
    return {k: sorted(v, key=lambda a: a["fraction"]) for k, v in sorted(curves.items())}


def _kd_label(alpha_setting: str) -> str:
    return "no KD" if alpha_setting == "0.0" else f"KD alpha={alpha_setting}"


def accuracy_figure(entries: list[dict], title: str, teacher_accuracy: float | None, path: Path) -> Path:
    """One panel per method: accuracy (mean ± std over seeds) vs kept fraction, a line per KD setting."""
    plt = pyplot()

    methods = _curves(entries, "method")
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.4), squeeze=False)
    for ax, (method, members) in zip(axes[0], methods.items()):
        for alpha, pts in _curves(members, "alpha_setting").items():
            ax.errorbar([p["fraction"] for p in pts], [100 * p["accuracy_mean"] for p in pts],
                        yerr=[100 * p["accuracy_std"] for p in pts], marker="o", ms=3, capsize=2, label=_kd_label(alpha))
        if teacher_accuracy is not None:
            ax.axhline(100 * teacher_accuracy, color="grey", ls=":", lw=1, label="teacher (all data)")
        ax.set_title(method)
        ax.set_xlabel("kept fraction")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%), mean ± std over seeds")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path, title, dpi=110)


def error_figure(entries: list[dict], fits: list[dict], title: str, path: Path) -> Path:
    """Log-log error vs kept size: one panel per KD setting, a line per method, fitted power law dashed."""
    plt = pyplot()
    import numpy as np

    settings = _curves(entries, "alpha_setting")
    fit_of = {(f["method"], f["alpha_setting"]): f for f in fits}
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.6), sharey=True, squeeze=False)
    for ax, (alpha, members) in zip(axes[0], settings.items()):
        for method, pts in _curves(members, "method").items():
            n = np.array([p["kept"] for p in pts], float)
            line = ax.loglog(n, [1 - p["accuracy_mean"] for p in pts], marker="o", ms=3, label=method)[0]
            fit = fit_of.get((method, alpha))
            if fit and fit["exponent"] is not None:
                ax.loglog(n, fit["prefactor"] * n ** (-fit["exponent"]), ls="--", lw=0.8, color=line.get_color())
        ax.set_title(_kd_label(alpha))
        ax.set_xlabel("kept samples")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("test error")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path, title, dpi=110)


def write_plots(agg: list[dict], fits: list[dict], out_dir: str | Path, teacher_accuracy: float | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (budget, balance), entries in sorted(_figure_groups(agg).items()):
        suffix = f"{budget}" + ("" if balance == "none" else f"_{balance}_balanced")
        title = f"{budget.replace('_', ' ')} budget" + (", class-balanced subsets" if balance == "class" else "")
        group_fits = [f for f in fits if f["budget_mode"] == budget and f["balance"] == balance]
        paths.append(accuracy_figure(entries, title, teacher_accuracy, out_dir / f"accuracy_vs_fraction_{suffix}.png"))
        paths.append(error_figure(entries, group_fits, title, out_dir / f"error_vs_size_{suffix}.png"))
    return paths
