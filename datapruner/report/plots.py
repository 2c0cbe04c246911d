"""PNG plots of a manifest: score distributions kept vs. not, and cluster sizes vs. kept counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datapruner.io.atomic import atomic_path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, title: str | None = None, dpi: int = 100) -> Path:
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return path


def score_histogram(scores: np.ndarray, kept: np.ndarray, name: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.histogram_bin_edges(scores, bins=50)
    ax.hist(scores[~kept], bins=bins, alpha=0.6, label=f"not kept ({(~kept).sum()})")
    ax.hist(scores[kept], bins=bins, alpha=0.6, label=f"kept ({kept.sum()})")
    ax.set_xlabel(name)
    ax.set_ylabel("samples")
    ax.legend()
    save_figure(fig, path)


def cluster_bars(sizes: np.ndarray, kept: np.ndarray, path: Path) -> None:
    plt = pyplot()
    order = np.argsort(-sizes, kind="stable")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(sizes))
    ax.bar(x, sizes[order], label="size", color="#bbb")
    ax.bar(x, kept[order], label="kept", color="#d62")
    ax.set_xlabel("cluster (by size)")
    ax.set_ylabel("samples")
    ax.legend()
    save_figure(fig, path)
