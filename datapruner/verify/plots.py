"""Matplotlib figures of a verify run, per (budget, balance, pool): accuracy vs kept fraction per method (a line per
KD setting, bars: the 95 % t interval with the test-set term), log-log error vs kept size with the fitted power laws; and, where several
pools exist, error vs kept size without KD across pools (Sorscher et al.'s abundance axis)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from datapruner.report.plots import pyplot, save_figure

NO_KD = "0.0"


def _groups(entries: list[dict], key) -> dict:
    groups: dict = defaultdict(list)
    for a in entries:
        groups[key(a)].append(a)
    return dict(sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])) if isinstance(kv[0], tuple) else str(kv[0])))


def _by_fraction(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda a: a["fraction"])


def _kd_label(alpha_setting: str) -> str:
    return "no KD" if alpha_setting == NO_KD else f"KD alpha={alpha_setting}"


def _ci_bars(pts: list[dict]) -> list[list[float]]:
    low = [100 * (p["accuracy_mean"] - (p["accuracy_ci"][0] if p["accuracy_ci"][0] is not None else p["accuracy_mean"])) for p in pts]
    high = [100 * ((p["accuracy_ci"][1] if p["accuracy_ci"][1] is not None else p["accuracy_mean"]) - p["accuracy_mean"]) for p in pts]
    return [low, high]


def _plain_log_ticks(ax) -> None:
    """Log axes with plain labels at 1, 2, 5 × 10^k (the default minor labels overlap on short ranges)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def accuracy_figure(entries: list[dict], title: str, teacher_accuracy: float | None, path: Path) -> Path:
    """One panel per method: accuracy (mean, 95 % CI over seeds) vs kept fraction, a line per KD setting."""
    plt = pyplot()
    methods = _groups(entries, lambda a: a["method"])
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.4), squeeze=False)
    for ax, (method, members) in zip(axes[0], methods.items()):
        for alpha, pts in _groups(members, lambda a: a["alpha_setting"]).items():
            pts = _by_fraction(pts)
            ax.errorbar([p["fraction"] for p in pts], [100 * p["accuracy_mean"] for p in pts], yerr=_ci_bars(pts),
                        marker="o", ms=3, capsize=2, label=_kd_label(alpha))
        if teacher_accuracy is not None:
            ax.axhline(100 * teacher_accuracy, color="grey", ls=":", lw=1, label="teacher (all data)")
        ax.set_title(method)
        ax.set_xlabel("kept fraction of the pool")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%), mean, 95 % CI")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path, title, dpi=110)


def error_figure(entries: list[dict], fits: list[dict], title: str, path: Path) -> Path:
    """Log-log error vs kept size: one panel per KD setting, a line per method, fitted power law dashed."""
    import numpy as np

    plt = pyplot()
    settings = _groups(entries, lambda a: a["alpha_setting"])
    fit_of = {(f["method"], f["alpha_setting"]): f for f in fits}
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.6), sharey=True, squeeze=False)
    for ax, (alpha, members) in zip(axes[0], settings.items()):
        for method, pts in _groups(members, lambda a: a["method"]).items():
            pts = _by_fraction(pts)
            n = np.array([p["kept"] for p in pts], float)
            line = ax.loglog(n, [1 - p["accuracy_mean"] for p in pts], marker="o", ms=3, label=method)[0]
            fit = fit_of.get((method, alpha))
            if fit and fit.get("exponent") is not None:
                ax.loglog(n, fit["prefactor"] * n ** (-fit["exponent"]), ls="--", lw=0.8, color=line.get_color())
        ax.set_title(_kd_label(alpha))
        _plain_log_ticks(ax)
        ax.set_xlabel("kept samples")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("test error")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path, title, dpi=110)


def pools_figure(entries: list[dict], title: str, path: Path) -> Path:
    """Error vs kept size without KD: a colour per method, a line style per pool."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    styles = ("-", "--", ":", "-.")
    colours: dict[str, str] = {}
    pools = sorted({a["pool"] for a in entries})
    for (method, pool), pts in _groups([a for a in entries if a["alpha_setting"] == NO_KD], lambda a: (a["method"], a["pool"])).items():
        pts = _by_fraction(pts)
        line = ax.loglog([p["kept"] for p in pts], [1 - p["accuracy_mean"] for p in pts], marker="o", ms=3,
                         ls=styles[pools.index(pool) % len(styles)], color=colours.get(method),
                         label=f"{method}, pool {pool:g}")[0]
        colours.setdefault(method, line.get_color())
    _plain_log_ticks(ax)
    ax.set_xlabel("kept samples")
    ax.set_ylabel("test error (no KD)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    return save_figure(fig, path, title, dpi=110)


def write_plots(agg: list[dict], fits: list[dict], out_dir: str | Path, teacher_accuracy: float | None = None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (budget, balance), entries in _groups(agg, lambda a: (a["budget_mode"], a["balance"])).items():
        suffix = budget + ("" if balance == "none" else f"_{balance}_balanced")
        title = f"{budget.replace('_', ' ')} budget" + (", class-balanced subsets" if balance == "class" else "")
        pools = _groups(entries, lambda a: a["pool"])
        for pool, members in pools.items():
            tag = suffix if len(pools) == 1 else f"{suffix}_pool{pool:g}"
            where = title if len(pools) == 1 else f"{title}, pool {pool:g}"
            pool_fits = [f for f in fits if (f["budget_mode"], f["balance"], f.get("pool", pool)) == (budget, balance, pool)]
            paths.append(accuracy_figure(members, where, teacher_accuracy, out_dir / f"accuracy_vs_fraction_{tag}.png"))
            paths.append(error_figure(members, pool_fits, where, out_dir / f"error_vs_size_{tag}.png"))
        if len(pools) > 1:
            paths.append(pools_figure(entries, f"{title}: error vs kept size across pools", out_dir / f"error_vs_size_pools_{suffix}.png"))
    return paths
