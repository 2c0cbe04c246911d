"""RUN/report/index.html: the summary, the plots, and per-cluster galleries of kept vs. dropped."""

from __future__ import annotations

import html
import json

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datapruner.io.atomic import atomic_path
from datapruner.io.rundir import RunDir
from datapruner.report.gallery import thumbnail_uri
from datapruner.report.plots import cluster_bars, score_histogram

PER_ROW = 8


FILES = ("index.html", "scores.png", "clusters.png")


def token(ctx, part: str) -> str:
    from datapruner.steps import barrier_digest

    return barrier_digest(ctx, "select", "manifest")


def outputs(run: RunDir, part: str) -> list:
    return [run.report_file(name) for name in FILES]


def run(ctx, part: str) -> dict:
    return {"report": build_report(ctx.run)}


def build_report(run: RunDir, clusters_shown: int = 6) -> str:
    manifest = pq.read_table(run.keep_parquet)
    summary = json.loads(run.summary_json.read_text())
    valid = manifest.filter(pc.is_valid(manifest.column("cluster")))
    metric = f"score_{summary['policy']['metric']}"
    kept = valid.column("kept").to_numpy(zero_copy_only=False)
    if metric in valid.column_names:
        score_histogram(valid.column(metric).to_numpy(), kept, metric, run.report_file("scores.png"))
    sizes, kept_per = np.array(summary["clusters"]["size"]), np.array(summary["clusters"]["kept"])
    cluster_bars(sizes, kept_per, run.report_file("clusters.png"))
    body = [_summary_table(summary), '<img src="scores.png"> <img src="clusters.png">']
    body += [_gallery(valid, int(c), metric) for c in np.argsort(-sizes, kind="stable")[:clusters_shown]]
    path = run.report_html
    with atomic_path(path) as tmp:
        tmp.write_text(_page("\n".join(body)))
    return str(path)


def _summary_table(summary: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in
                   {**summary["counts"], **summary["reasons"]}.items())
    return f"<h2>Summary</h2><p>policy: {html.escape(json.dumps(summary['policy']))}</p><table>{rows}</table>"


def _gallery(valid, cluster: int, metric: str) -> str:
    rows = valid.filter(pc.equal(valid.column("cluster"), cluster))
    if metric in rows.column_names:
        rows = rows.sort_by([(metric, "descending")])
    parts = [f"<h3>cluster {cluster}: {rows.num_rows} samples, {pc.sum(rows.column('kept')).as_py() or 0} kept "
             "(highest score first)</h3>"]
    for label, flag in (("kept", True), ("not kept", False)):
        chosen = rows.filter(pc.equal(rows.column("kept"), flag)).slice(0, PER_ROW).to_pylist()
        imgs = "".join(_figure(r, metric) for r in chosen if r.get("offset") is not None)
        parts.append(f"<div><b>{label}</b><br>{imgs}</div>")
    return "\n".join(parts)


def _figure(row: dict, metric: str) -> str:
    try:
        uri = thumbnail_uri(row["shard"], row["offset"], row["length"])
    except OSError:
        uri = None
    score = f"{row[metric]:.3f}" if row.get(metric) is not None else ""
    img = f'<img src="{uri}">' if uri else "(no image)"
    return f'<figure>{img}<figcaption>{html.escape(row["key"])} {score}</figcaption></figure>'


def _page(body: str) -> str:
    style = ("body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:4px;text-align:center}"
             "figcaption{font-size:11px}td{padding:2px 8px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>datapruner report</title>" \
           f"<style>{style}</style></head><body><h1>datapruner report</h1>{body}</body></html>\n"
