"""SemDeDup's duplicate groups: the sample the filter kept beside the copies it removed.

The scores hold each sample's highest similarity to an earlier sample of its cluster, not which one:
for the few most similar removed samples the report recomputes, inside their cluster, the most similar
sample that SemDeDup did not remove (at most POOL of them per cluster are read)."""

from __future__ import annotations

import numpy as np

from datapruner.io.rundir import RunDir
from datapruner.report.data import Manifest, embeddings, rows_of, seeded_sample

REMOVED = "removed by filter semdedup"
CANDIDATES = 24  # removed samples looked at
GROUPS = 6
COPIES = 4
POOL = 20000


def duplicate_groups(run: RunDir, manifest: Manifest, seed: int) -> list[dict]:
    """Up to GROUPS groups: {"kept": row, "copies": [row...]} with `similarity` on each copy."""
    removed = np.flatnonzero(np.array([r == REMOVED for r in manifest.reason], bool))
    score = manifest.column("score_semdedup")
    if not len(removed) or score is None or manifest.starts is None:
        return []
    top = removed[np.lexsort((removed, -score[removed]))][:CANDIDATES]  # most similar first, ties by row
    survivors_all = np.array([r != REMOVED for r in manifest.reason], bool)
    best: dict[int, tuple[int, float]] = {}
    for cluster in np.unique(manifest.cluster[top]):
        queries = top[manifest.cluster[top] == cluster]
        pool = np.flatnonzero(survivors_all & (manifest.cluster == cluster))
        if not len(pool):
            continue
        pool = pool[seeded_sample(len(pool), POOL, seed, int(cluster))]
        sims = embeddings(run, manifest, queries) @ embeddings(run, manifest, pool).T
        pick = sims.argmax(axis=1)
        for q, j, s in zip(queries, pick, sims[np.arange(len(queries)), pick]):
            best[int(q)] = (int(pool[j]), float(s))
    groups: dict[int, list[tuple[int, float]]] = {}
    for q in top:
        if int(q) in best:
            rep, sim = best[int(q)]
            groups.setdefault(rep, []).append((int(q), sim))
    out = []
    for rep, copies in list(groups.items())[:GROUPS]:
        kept_row = rows_of(manifest, [rep])[0]
        copy_rows = rows_of(manifest, [q for q, _ in copies[:COPIES]])
        for row, (_, sim) in zip(copy_rows, copies):
            row["similarity"] = sim
        out.append({"kept": kept_row, "copies": copy_rows, "more": max(0, len(copies) - COPIES)})
    return out
