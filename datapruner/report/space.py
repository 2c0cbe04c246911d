"""The embedding space: a 2-D map of a sample coloured kept/dropped, and the selection against a random subset
of the same size. Only a seeded sample of rows is read from the embeddings (at most SAMPLE)."""

from __future__ import annotations

import numpy as np

from datapruner.io.rundir import RunDir
from datapruner.report import plots
from datapruner.report.data import FILTERED, Manifest, embeddings, seeded_sample

SAMPLE = 5000
BLOCK = 2048


def pca_2d(x: np.ndarray) -> np.ndarray:
    """The rows projected on their first two principal components (numpy SVD of the centred sample)."""
    if len(x) < 2:
        return np.zeros((len(x), 2))
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    return xy if xy.shape[1] == 2 else np.c_[xy, np.zeros(len(xy))]


def nearest_distance(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Each query's cosine distance to its nearest row of `pool` (unit rows), in blocks."""
    out = np.empty(len(queries), np.float32)
    for lo in range(0, len(queries), BLOCK):
        out[lo:lo + BLOCK] = 1.0 - (queries[lo:lo + BLOCK] @ pool.T).max(axis=1)
    return np.clip(out, 0.0, 2.0)


def total_variation(counts: np.ndarray, reference: np.ndarray) -> float:
    p = counts / max(1, counts.sum())
    q = reference / max(1, reference.sum())
    return float(0.5 * np.abs(p - q).sum())


def random_subset(n: int, k: int, seed: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[np.random.default_rng([seed, 17]).choice(n, k, replace=False)] = True
    return mask


def measure(label: str, name: str, selection: float, baseline: float, fmt: str, better: str) -> dict:
    """One row of the comparison: `better` is "higher" or "lower", `name` what the verdict calls it; the
    verdict compares the values as shown."""
    shown = format(selection, fmt), format(baseline, fmt)
    return {"label": label, "name": name, "selection": shown[0], "random": shown[1],
            "values": (float(shown[0]), float(shown[1])), "better": better}


def comparison(run: RunDir, manifest: Manifest, seed: int, sample: dict | None) -> dict:
    """The selection beside a seeded random subset of the same size: rows of (label, selection, random)."""
    n, kept = manifest.n, manifest.kept
    rand = random_subset(n, int(kept.sum()), seed)
    sizes = np.bincount(manifest.cluster, minlength=int(manifest.cluster.max()) + 1 if n else 0)
    rows = cluster_measures(manifest.cluster, sizes, kept, rand) + label_measures(manifest, kept, rand)
    if sample is not None:
        rows += coverage_measure(sample, kept, rand)
    return {"rows": rows, "random_per_cluster": np.bincount(manifest.cluster[rand], minlength=len(sizes)),
            "size": int(kept.sum())}


def cluster_measures(cluster: np.ndarray, sizes: np.ndarray, kept: np.ndarray, rand: np.ndarray) -> list[dict]:
    def covered(mask):
        return int((np.bincount(cluster[mask], minlength=len(sizes)) > 0).sum())

    def distance(mask):
        return total_variation(np.bincount(cluster[mask], minlength=len(sizes)), sizes)

    return [measure(f"clusters with at least one kept sample (of {int((sizes > 0).sum())} non-empty)",
                    "clusters covered", covered(kept), covered(rand), "d", "higher"),
            measure("total variation distance of the kept samples' cluster distribution to the full one "
                    "(0 = same shares, 1 = disjoint)", "cluster shares", distance(kept), distance(rand), ".3f", "lower")]


def label_measures(manifest: Manifest, kept: np.ndarray, rand: np.ndarray) -> list[dict]:
    labels = manifest.column("label")
    if labels is None:
        return []
    ok = ~np.isnan(labels.astype(np.float64)) if labels.dtype.kind == "f" else np.ones(manifest.n, bool)
    if not ok.any():
        return []
    values, codes = np.unique(labels[ok].astype(np.int64), return_inverse=True)
    full = np.bincount(codes, minlength=len(values))
    own = np.bincount(codes[kept[ok]], minlength=len(values))
    other = np.bincount(codes[rand[ok]], minlength=len(values))
    return [measure(f"total variation distance of the kept samples' label distribution to the full one "
                    f"({len(values)} labels)", "label shares", total_variation(own, full),
                    total_variation(other, full), ".3f", "lower"),
            measure(f"smallest label share among the kept samples (full data: {full.min() / max(1, full.sum()):.3f})",
                    "the rarest label's share", own.min() / max(1, own.sum()), other.min() / max(1, other.sum()),
                    ".3f", "higher")]


def coverage_measure(sample: dict, kept: np.ndarray, rand: np.ndarray) -> list[dict]:
    x, idx = sample["emb"], sample["rows"]
    for name, mask in (("selection", kept[idx]), ("random", rand[idx])):
        if mask.any() and (~mask).any():
            sample[name] = float(nearest_distance(x[~mask], x[mask]).mean())
    if "selection" not in sample or "random" not in sample:
        return []
    return [measure(f"mean cosine distance from a dropped sample to its nearest kept one (within a seeded sample of "
                    f"{len(idx):,} valid samples; lower = the kept samples cover the dropped ones better)",
                    "coverage of the dropped samples", sample["selection"], sample["random"], ".4f", "lower")]


def verdict(rows: list[dict], size: int) -> str:
    """In words, how the selection compares with the random subset on the rows' measures."""
    head = f"Against a random subset of the same size ({size:,} samples), this selection is "
    better, worse = [], []
    for row in rows:
        own, other = row["values"]
        if own != other:
            (better if (own > other) == (row["better"] == "higher") else worse).append(row["name"])
    if not rows:
        return f"No measure compares this selection with a random subset of the same size ({size:,} samples)."
    if not better and not worse:
        return head + f"equal to it on all {len(rows)} measures below."
    if not better:
        share = "every measure below" if len(worse) == len(rows) else f"{len(worse)} of {len(rows)} measures below"
        return head + (f"worse on {share} ({', '.join(worse)}) and better on none: a random subset covers the data "
                       "better. Check that this policy helps a model trained on it (datapruner verify) before using it.")
    parts = [f"better on {len(better)} of {len(rows)} measures below ({', '.join(better)})"]
    parts += [f"worse on {len(worse)} ({', '.join(worse)})"] if worse else []
    parts += [f"equal on {len(rows) - len(better) - len(worse)}"] if len(better) + len(worse) < len(rows) else []
    return head + ", ".join(parts) + "."


def space_sample(run: RunDir, manifest: Manifest, seed: int, size: int = SAMPLE) -> dict | None:
    """A seeded sample of valid rows and their unit embeddings (None when the embeddings cannot be read)."""
    rows = seeded_sample(manifest.n, size, seed)
    if not len(rows):
        return None
    try:
        emb = embeddings(run, manifest, rows)
    except (LookupError, OSError, ValueError):
        return None
    return {"rows": rows, "emb": emb}


def embedding_map(manifest: Manifest, sample: dict) -> str:
    idx = sample["rows"]
    xy = pca_2d(sample["emb"])
    kept = manifest.kept[idx]
    filtered = np.array([manifest.reason[i].startswith(FILTERED) for i in idx], bool)
    groups = {"dropped by the budget": ~kept & ~filtered, "removed by a filter": filtered, "kept": kept}
    return plots.embedding_map(xy, groups)
