"""The report's plots, as inline data: URIs of PNGs (the report is one file that opens anywhere)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from datapruner.io.atomic import atomic_path

KEPT, DROPPED, FILTERED = "#d9480f", "#adb5bd", "#4263eb"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, title: str | None = None, dpi: int = 100) -> Path:
    """Write a figure to a file (verify's plots use this; the report inlines its own with `data_uri`)."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return path


def data_uri(fig, dpi: int = 90) -> str:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def score_histograms(columns: dict[str, np.ndarray], kept: np.ndarray) -> str:
    """One panel per score column: the kept and the dropped samples' distributions."""
    plt = pyplot()
    names = list(columns)
    fig, axes = plt.subplots(1, len(names), figsize=(2.9 * len(names), 2.7), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = columns[name].astype(np.float64)
        ok = np.isfinite(values)
        bins = np.histogram_bin_edges(values[ok], bins=40) if ok.any() else 10
        ax.hist(values[ok & ~kept], bins=bins, alpha=0.7, color=DROPPED, label=f"dropped ({(ok & ~kept).sum():,})")
        ax.hist(values[ok & kept], bins=bins, alpha=0.7, color=KEPT, label=f"kept ({(ok & kept).sum():,})")
        ax.set_xlabel(name)
        ax.set_ylabel("samples")
        ax.legend(fontsize=8)
    return data_uri(fig)


def cluster_bars(sizes: np.ndarray, kept: np.ndarray, random_kept: np.ndarray | None = None) -> str:
    """Size and kept count of every cluster, x = cluster id (the ids the tables and galleries use)."""
    plt = pyplot()
    k = len(sizes)
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.12 * k + 3)), 3.2))
    x = np.arange(k)
    ax.bar(x, sizes, color="#dee2e6", label="size", width=0.9)
    ax.bar(x, kept, color=KEPT, label="kept", width=0.6)
    if random_kept is not None:
        ax.plot(x, random_kept, "k.", markersize=4, label="random subset of the same size")
    ax.set_xlabel("cluster id")
    ax.set_ylabel("samples")
    if k <= 40:
        ax.set_xticks(x)
    ax.legend(fontsize=8)
    return data_uri(fig)


def embedding_map(xy: np.ndarray, groups: dict[str, np.ndarray]) -> str:
    """A 2-D scatter of projected embeddings, one colour per group (a boolean mask each)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.0))
    colours = {"kept": KEPT, "dropped by the budget": DROPPED, "removed by a filter": FILTERED}
    for name, mask in groups.items():
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.6, color=colours.get(name, "#000"),
                       label=f"{name} ({int(mask.sum()):,})", linewidths=0)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=2)
    return data_uri(fig)
