"""Web scale on one machine: the SemDeDup → DBP recipe's steps at growing N, each step in a process of its own.

    python bench/web_scale.py [--sizes 1000000,10000000] [--dim 64] [--fixed-k 1000] [--k-modes fixed,sqrt]
                              [--part-rows 250000] [--tmp DIR] [--json PATH]

Synthetic float16 unit rows (1,000 blobs) in the run's embeddings layout, every embed part marked done (the
join that makes this layout from precomputed embeddings is bench/join_embeddings.py). Then cluster, assign,
fit (DBP), dedup (SemDeDup's scores), measure and select run one after another, each in a child process
(`python bench/web_scale.py --child STEP`) on the local runner in that process, so a step's peak RSS is the
peak of every process that did its work. Per step: wall and CPU µs per row, and the peak RSS less what the
process held once its imports were done. SemDeDup's work is Σ nⱼ² over clusters, so at fixed k its time per
row grows as N / k by design: its time per pair (ns per compared pair) is the figure that should stay flat.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from publish import add_json_option, table, write  # noqa: E402
from select_scaling import link_embeddings, write_synthetic_run  # noqa: E402

STEPS = ("cluster", "assign", "fit", "dedup", "measure", "select")
RECIPE = {"metric": "prototypicality", "order": "hard", "budget": "dbp", "keep": 0.3,
          "filters": [{"name": "semdedup", "fraction": 0.1}]}


def child(step: str, run_root: str, config: dict) -> dict:
    from process_meter import peak_rss_mib

    import datapruner.cluster.kmeans  # noqa: F401  the rooms (torch, faiss) imported before the baseline
    import datapruner.metrics.scoring  # noqa: F401
    from datapruner.config import Config
    from datapruner.io.rundir import RunDir
    from datapruner.steps.contract import Context
    from datapruner.steps.loop import run_step

    cfg = Config(device="cpu", **{**config, "filters": tuple(config.get("filters", ()))})
    ctx = Context(RunDir(run_root), cfg, progress=False)
    rss_imported = peak_rss_mib()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    run_step(ctx, step)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": time.perf_counter() - started,
            "cpu_seconds": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime,
            "peak_rss_mib": peak_rss_mib(), "rss_after_imports_mib": rss_imported}


def in_child(step: str, run_root: Path, config: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", step, "--run", str(run_root), "--config",
                          json.dumps(config)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def pairs(run_root: Path) -> float:
    """Σ over clusters of nⱼ(nⱼ − 1)/2: the similarities SemDeDup computes."""
    from datapruner.cluster.assign import part_assignment
    from datapruner.io.rundir import RunDir

    run = RunDir(run_root)
    k = len(np.load(run.centroids))
    sizes = sum(np.bincount(part_assignment(run, p)[0], minlength=k) for p in run.part_ids()).astype(np.float64)
    return float((sizes * (sizes - 1) / 2).sum())


def measure(tmp: Path, n: int, args) -> list[dict]:
    base = tmp / f"n{n}-fixed"
    write_synthetic_run(base, n, args.dim, args.part_rows)
    rows = []
    for mode, k in [m for m in (("fixed", args.fixed_k), ("sqrt", round(math.sqrt(n)))) if m[0] in args.k_modes]:
        run = base if mode == "fixed" else tmp / f"n{n}-sqrt"
        if mode == "sqrt":
            link_embeddings(base, run)
        config = {**RECIPE, "clusters": k, "kmeans_iters": args.iters}
        row = {"n": n, "k_mode": mode, "k": k}
        for step in STEPS:
            row[step] = in_child(step, run, config)
        row["pairs"] = pairs(run)
        rows.append(row)
        print(json.dumps(line_of(row)), file=sys.stderr, flush=True)
        if mode == "sqrt":
            subprocess.run(["rm", "-rf", str(run)], check=True)
    subprocess.run(["rm", "-rf", str(base)], check=True)
    return rows


def line_of(row: dict) -> dict:
    n = row["n"]
    line = {"n": n, "k_mode": row["k_mode"], "k": row["k"], "pairs": row["pairs"]}
    for step in STEPS:
        r = row[step]
        line[step] = {"us_per_row": round(r["seconds"] / n * 1e6, 3), "cpu_us_per_row": round(r["cpu_seconds"] / n * 1e6, 3),
                      "own_rss_mib": round(r["peak_rss_mib"] - r["rss_after_imports_mib"]),
                      "peak_rss_mib": round(r["peak_rss_mib"])}
    line["dedup"]["cpu_ns_per_pair"] = round(row["dedup"]["cpu_seconds"] / max(row["pairs"], 1) * 1e9, 3)
    return line


def tables(lines: list[dict]) -> list[dict]:
    out = []
    for mode in ("fixed", "sqrt"):
        mine = [l for l in lines if l["k_mode"] == mode]
        if not mine:
            continue
        first = mine[0]
        rows = []
        for l in mine:
            cells = [f"{l['n']:,}", l["k"]]
            for step in STEPS:
                ratio = l[step]["cpu_us_per_row"] / first[step]["cpu_us_per_row"] if first[step]["cpu_us_per_row"] else None
                cells.append(f"{l[step]['cpu_us_per_row']} ({ratio:.2f}×) · {l[step]['own_rss_mib']} MiB"
                             if ratio is not None else "—")
            cells.append(f"{l['dedup']['cpu_ns_per_pair']}")
            rows.append(cells)
        out.append(table(f"k {mode}: CPU µs per row (against the smallest N) · the step's own peak RSS",
                         ["rows", "k", *STEPS, "dedup ns per pair"], rows))
    return out


def headline(lines: list[dict]) -> str:
    parts = []
    for mode in ("fixed", "sqrt"):
        mine = [l for l in lines if l["k_mode"] == mode]
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            flat = [s for s in STEPS if s != "dedup"]
            worst = max(flat, key=lambda s: b[s]["cpu_us_per_row"] / max(a[s]["cpu_us_per_row"], 1e-9))
            parts.append(f"k {mode}, {a['n']:,} → {b['n']:,} rows: worst per-row growth outside dedup {worst} "
                         f"{b[worst]['cpu_us_per_row'] / max(a[worst]['cpu_us_per_row'], 1e-9):.2f}×; dedup per pair "
                         f"{b['dedup']['cpu_ns_per_pair'] / max(a['dedup']['cpu_ns_per_pair'], 1e-9):.2f}×")
    return "; ".join(parts) or "one size only"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--fixed-k", type=int, default=1000)
    ap.add_argument("--part-rows", type=int, default=250_000)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--k-modes", default="fixed,sqrt", type=lambda s: s.split(","))
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--child")
    ap.add_argument("--run")
    ap.add_argument("--config")
    add_json_option(ap, "web_scale")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.run, json.loads(args.config))))
        return
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        rows = [row for n in (int(float(s)) for s in args.sizes.split(",")) for row in measure(Path(tmp), n, args)]
    lines = [line_of(r) for r in rows]
    result = {"dim": args.dim, "part_rows": args.part_rows, "per_size": lines}
    print(json.dumps(result, indent=2))
    write(args.json_path, "web_scale", title=__doc__.splitlines()[0], result=result, headline=headline(lines),
          tables=tables(lines))


if __name__ == "__main__":
    main()
