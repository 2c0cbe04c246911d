"""RUN/report/index.html (the report step's room): one self-contained page (plots and thumbnails inline) of what the run selected.

The report step of the table. Its page shows the run facts and the policy in words, counts by stage and
reason, score distributions kept vs. dropped, every cluster by id (with the budget's per-cluster table,
e.g. DBP's d_intra, d_inter, C, P and quota), galleries with captions, SemDeDup's duplicate groups, the
invalid samples by reason, a 2-D map of the embeddings and the selection beside a random subset of the
same size. Its token is what it shows: the manifest's digest and the written shards' state, so every
command that changes either rebuilds it. The work is bounded: embeddings are read for a seeded sample
of at most 5000 rows (and a few clusters for the duplicate groups), thumbnails are capped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from datapruner.io.atomic import write_text
from datapruner.io.identity import Sources
from datapruner.io.rundir import RunDir
from datapruner.report import facts, plots, space
from datapruner.report.data import Manifest, load_manifest, rows_of
from datapruner.report.dedup import duplicate_groups
from datapruner.report.gallery import figure, warn_hidden
from datapruner.report.invalid import invalid_examples

LAYOUT = "report-3: one page, inline plots; the comparison with random and a random-init warning on top"
TEMPLATES = Path(__file__).parent / "templates"
PER_ROW = 8
CLUSTERS_SHOWN = 6
CLUSTER_ROWS = 200
SCORE_PANELS = 4


def build_report(run: RunDir, seed: int = 0, max_pixels: int | None = None, clusters_shown: int = CLUSTERS_SHOWN) -> str:
    write_text(run.report_html, render(context(run, seed, max_pixels, clusters_shown)))
    return str(run.report_html)


def render(values: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2").render(**values)


def context(run: RunDir, seed: int, max_pixels: int | None, clusters_shown: int) -> dict:
    manifest = load_manifest(run)
    summary = manifest.summary
    metric = summary.get("policy", {}).get("metric")
    sample = space.space_sample(run, manifest, seed)
    versus = space.comparison(run, manifest, seed, sample)
    clusters = cluster_rows(run, manifest, versus["random_per_cluster"])
    shown = largest_clusters(manifest, clusters_shown)
    sources = Sources(run)  # a shard changed since it was embedded shows no thumbnails
    values = {
        "title": f"datapruner report: {Path(str(run.read_run_json().get('source', run.root))).name}",
        "policy": facts.policy_words(summary),
        "facts": facts.run_facts(run, manifest),
        "times": facts.step_times(run),
        "written": _written(run),
        "stages": facts.counts_by_stage(summary),
        "scores_plot": _scores_plot(manifest, metric),
        "clusters_plot": plots.cluster_bars(np.array(summary["clusters"]["size"]), np.array(summary["clusters"]["kept"]),
                                            versus["random_per_cluster"]) if summary["clusters"]["size"] else None,
        "clusters": clusters,
        "cluster_columns": _cluster_columns(clusters),
        "galleries": [gallery(manifest, c, metric, max_pixels, sources) for c in shown],
        "duplicates": [{"kept": figure(g["kept"], "semdedup", max_pixels=max_pixels, sources=sources),
                        "copies": [figure(r, "semdedup", max_pixels=max_pixels, sources=sources) for r in g["copies"]],
                        "more": g["more"]} for g in duplicate_groups(run, manifest, seed)],
        "semdedup_used": any(f.get("name") == "semdedup" for f in summary.get("policy", {}).get("filters", [])),
        "invalid": invalid_examples(run),
        "map_plot": space.embedding_map(manifest, sample) if sample is not None else None,
        "map_rows": 0 if sample is None else len(sample["rows"]),
        "versus": versus["rows"],
        "versus_words": space.verdict(versus["rows"], versus["size"]),
        "random_init": facts.random_init_model(run),
        "versus_size": versus["size"],
        "valid": manifest.n,
        "seed": seed,
    }
    warn_hidden(sources)
    return values


def _written(run: RunDir) -> dict | None:
    done = facts.written(run)
    if done is not None:
        done["size"] = facts.human_bytes(done["bytes"])
    return done


def _scores_plot(manifest: Manifest, metric: str | None) -> str | None:
    names = manifest.score_columns()
    first = [f"score_{metric}"] if f"score_{metric}" in names else []
    rest = [n for n in names if n not in first and n != "score_random"]
    chosen = (first + rest)[:SCORE_PANELS]
    if not chosen or not manifest.n:
        return None
    return plots.score_histograms({n[len("score_"):]: manifest.column(n) for n in chosen}, manifest.kept)


BUDGET_COLUMNS = (("size", "after filters"), ("d_intra", "d_intra"), ("d_inter", "d_inter"),
                  ("complexity", "C = d_intra·d_inter"), ("p", "P = softmax(C/τ)"), ("lower", "floor"),
                  ("target", "P·K"), ("quota", "quota"))


def cluster_rows(run: RunDir, manifest: Manifest, random_kept: np.ndarray) -> list[dict]:
    """One row per cluster id: size, kept, kept share, a random subset's kept count and, when the budget
    saved one, its per-cluster table (manifest/<budget>_clusters.parquet)."""
    summary = manifest.summary
    sizes, kept = summary["clusters"]["size"], summary["clusters"]["kept"]
    budget = _budget_table(run, summary)
    rows = []
    for c, (size, k) in enumerate(zip(sizes, kept)):
        row = {"cluster": c, "size": size, "kept": k, "share": f"{k / size:.0%}" if size else "–",
               "random": int(random_kept[c]) if c < len(random_kept) else 0, "budget": {}}
        for name, _ in BUDGET_COLUMNS:
            if budget is not None and name in budget and c in budget[name]:
                value = budget[name][c]
                row["budget"][name] = f"{value:.4g}" if isinstance(value, float) else str(value)
        rows.append(row)
    if len(rows) > CLUSTER_ROWS:
        largest = sorted(sorted(rows, key=lambda r: (-r["size"], r["cluster"]))[:CLUSTER_ROWS], key=lambda r: r["cluster"])
        return largest
    return rows


def _budget_table(run: RunDir, summary: dict) -> dict | None:
    name = (summary.get("budget") or {}).get("name")
    path = run.budget_clusters(name) if name else None
    if path is None or not path.exists():
        return None
    table = pq.read_table(path)
    if "cluster" not in table.column_names:
        return None
    ids = table.column("cluster").to_pylist()
    return {col: dict(zip(ids, table.column(col).to_pylist())) for col in table.column_names if col != "cluster"}


def _cluster_columns(rows: list[dict]) -> list[tuple[str, str]]:
    present = {k for r in rows for k in r["budget"]}
    return [(name, label) for name, label in BUDGET_COLUMNS if name in present]


def largest_clusters(manifest: Manifest, count: int) -> list[int]:
    sizes = np.array(manifest.summary["clusters"]["size"])
    return [int(c) for c in np.argsort(-sizes, kind="stable")[:count] if sizes[c] > 0]


def gallery(manifest: Manifest, cluster: int, metric: str | None, max_pixels: int | None,
            sources: Sources | None = None) -> dict:
    """A cluster's kept and dropped samples, highest score first, at most PER_ROW of each."""
    mine = manifest.cluster == cluster
    score = manifest.column(f"score_{metric}") if metric else None
    out = {"cluster": cluster, "size": int(mine.sum()), "kept_count": int((mine & manifest.kept).sum()),
           "metric": metric, "rows": []}
    for label, flag in (("kept", True), ("dropped", False)):
        idx = np.flatnonzero(mine & (manifest.kept == flag))
        if score is not None:
            idx = idx[np.lexsort((idx, -np.nan_to_num(score[idx].astype(np.float64), nan=-np.inf)))]
        figures = [figure(r, metric, max_pixels=max_pixels, sources=sources) for r in rows_of(manifest, idx[:PER_ROW])]
        out["rows"].append({"label": label, "count": len(idx), "figures": figures})
    return out
