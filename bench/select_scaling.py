"""How cluster + select scale with N: time per row and select's peak RSS at each size (default 1e6, 4e6, 1e7
rows of float16 precomputed embeddings), with k fixed and with k = √N.

    python bench/select_scaling.py [--sizes 1000000,4000000,10000000] [--dim 32] [--fixed-k 256]
                                   [--part-rows 250000] [--baseline-up-to 4000000] [--keep 0.3]
                                   [--k-modes fixed,sqrt] [--json PATH]

With --select-only, the scores are synthetic (written as the measure step writes them) and only select runs:
its scaling alone, to sizes that clustering on this machine would not reach in the time.

Each step runs in a child process of its own (its peak RSS is its own): `cluster` (k-means), `measure`
(assignment to the centroids, the metrics' scores) and `select` (the manifest, written part by part).
Ratios are against the smallest size of the same run: time per row, and select's peak RSS. Up to
--baseline-up-to rows the in-memory reference selection (every row loaded) also runs in a child, on the
same scores: its RSS is the baseline beside the part-by-part figure, and both manifests must be equal.
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
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from publish import add_json_option, table, write  # noqa: E402


def write_synthetic_run(run_root: Path, n: int, dim: int, part_rows: int, seed: int = 0) -> None:
    """Clustered float16 unit vectors in the embeddings layout, with every embed part marked done."""
    from datapruner.embed.outputs import METADATA_SCHEMA
    from datapruner.io.atomic import save_npy, save_parquet
    from datapruner.io.rundir import RunDir, part_id

    run = RunDir(run_root)
    rng = np.random.default_rng(seed)
    parts = max(1, math.ceil(n / part_rows))
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    shards = [f"synthetic/{i:05d}.tar" for i in range(parts)]
    run.update_run_json(shards=shards, source="synthetic", embed={"inputs": {"synthetic": seed}, "token": "synthetic"})
    for i, shard in enumerate(shards):
        rows = min(part_rows, n - i * part_rows)
        x = centers[rng.integers(0, len(centers), rows)] + rng.standard_normal((rows, dim), dtype=np.float32) * 0.7
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        part = part_id(i, parts)
        save_npy(run.img_emb(part), x.astype(np.float16))
        keys = pc.utf8_lpad(pa.array(np.arange(rows)).cast(pa.string()), 9, "0")
        table = pa.table({"shard": pa.array([shard] * rows), "key": keys, "offset": np.arange(rows) * 4096,
                          "length": np.full(rows, 4096)})
        save_parquet(run.metadata(part), table.cast(pa.schema([f for f in METADATA_SCHEMA if f.name in table.column_names])))
        run.write_marker("embed", part, "synthetic", [run.img_emb(part), run.metadata(part)])


def link_embeddings(source: Path, run_root: Path) -> None:
    """A second run over the same embeddings (run.json's embeddings_dir), its embed parts marked done."""
    from datapruner.io.rundir import RunDir

    src, run = RunDir(source), RunDir(run_root)
    info = src.read_run_json()
    run.update_run_json(shards=info["shards"], source="synthetic", embed=info["embed"],
                        embeddings_dir=str(src.own_embeddings))
    for part in run.part_ids():
        run.write_marker("embed", part, "synthetic", [])


def child(step: str, run_root: str, config: dict) -> dict:
    """Runs in its own process: one command's steps; prints seconds and this process's peak RSS."""
    from process_meter import peak_rss_mib

    from datapruner.config import Config
    from datapruner.io.rundir import RunDir
    import datapruner.cluster.kmeans  # noqa: F401  the steps' rooms (torch among them) imported before the baseline
    import datapruner.metrics.scoring  # noqa: F401
    from datapruner.select.manifest import build_manifest_by_parts, build_manifest_in_memory
    from datapruner.steps.contract import Context
    from datapruner.steps.loop import run_step

    cfg = Config(device="cpu", **config)
    ctx = Context(RunDir(run_root), cfg, progress=False)
    before = resource.getrusage(resource.RUSAGE_SELF)
    rss_imported, cpu_before = peak_rss_mib(), before.ru_utime + before.ru_stime
    started = time.perf_counter()
    if step == "select-in-memory":
        build_manifest_in_memory(ctx.run, cfg.keep, cfg)
    elif step == "select-by-parts":
        build_manifest_by_parts(ctx.run, cfg.keep, cfg)
    else:
        for name in {"cluster": ("cluster",), "measure": ("assign", "fit", "measure"), "select": ("select",)}[step]:
            run_step(ctx, name)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before,
            "peak_rss_mib": peak_rss_mib(), "rss_after_imports_mib": rss_imported}



def in_child(step: str, run_root: Path, config: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", step, "--run", str(run_root), "--config",
                          json.dumps(config)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_synthetic_scores(run_root: Path, n: int, k: int, part_rows: int, seed: int = 0) -> None:
    """Only what select reads: metadata and scores parts as the measure step writes them (for --select-only)."""
    from datapruner.io.atomic import save_parquet
    from datapruner.io.rundir import RunDir, part_id

    run = RunDir(run_root)
    rng = np.random.default_rng(seed)
    parts = max(1, math.ceil(n / part_rows))
    shards = [f"synthetic/{i:05d}.tar" for i in range(parts)]
    run.update_run_json(shards=shards, source="synthetic")
    for i, shard in enumerate(shards):
        rows = min(part_rows, n - i * part_rows)
        part = part_id(i, parts)
        keys = pc.utf8_lpad(pa.array(np.arange(rows)).cast(pa.string()), 9, "0")
        save_parquet(run.metadata(part), pa.table({"key": keys, "shard": pa.array([shard] * rows),
                                                   "offset": np.arange(rows) * 4096, "length": np.full(rows, 4096)}))
        save_parquet(run.scores(part), pa.table({
            "shard": pa.array([shard] * rows), "key": keys, "cluster": rng.integers(0, k, rows).astype(np.int64),
            "dist_to_centroid": rng.random(rows).astype(np.float32),
            "score_prototypicality": rng.random(rows).astype(np.float32),
            "score_random": rng.random(rows).astype(np.float32)}))


def measure_select_only(tmp: Path, n: int, args) -> list[dict]:
    """select alone (part by part, and the in-memory reference up to --baseline-up-to) on synthetic scores."""
    results = []
    for mode, k in [m for m in (("fixed", args.fixed_k), ("sqrt", round(math.sqrt(n)))) if m[0] in args.k_modes]:
        run = tmp / f"n{n}-{mode}"
        write_synthetic_scores(run, n, k, args.part_rows)
        config = {"clusters": k, "keep": args.keep, "budget": "cluster"}
        row = {"n": n, "k_mode": mode, "k": k, "select": in_child("select-by-parts", run, config)}
        if n <= args.baseline_up_to:
            reference = tmp / f"n{n}-{mode}-reference"
            subprocess.run(["cp", "-r", str(run), str(reference)], check=True)
            subprocess.run(["rm", "-rf", str(reference / "manifest")], check=True)
            row["select_in_memory"] = in_child("select-in-memory", reference, config)
            row["select_in_memory"]["same_manifest"] = manifests_equal(run, reference)
            subprocess.run(["rm", "-rf", str(reference)], check=True)
        subprocess.run(["rm", "-rf", str(run)], check=True)
        results.append(row)
        print(json.dumps(summary_line(row)), file=sys.stderr, flush=True)
    return results


def manifests_equal(a: Path, b: Path) -> bool:
    return (a / "manifest/keep.parquet").read_bytes() == (b / "manifest/keep.parquet").read_bytes()


def measure(tmp: Path, n: int, args) -> list[dict]:
    base = tmp / f"n{n}-fixed"
    write_synthetic_run(base, n, args.dim, args.part_rows)
    results = []
    for mode, k in [m for m in (("fixed", args.fixed_k), ("sqrt", round(math.sqrt(n)))) if m[0] in args.k_modes]:
        run = base if mode == "fixed" else tmp / f"n{n}-sqrt"
        if mode == "sqrt":
            link_embeddings(base, run)
        config = {"clusters": k, "keep": args.keep, "budget": "cluster", "kmeans_iters": args.iters}
        row = {"n": n, "k_mode": mode, "k": k}
        for step in ("cluster", "measure", "select"):
            row[step] = in_child(step, run, config)
        if n <= args.baseline_up_to:
            reference = tmp / f"n{n}-{mode}-reference"
            link_embeddings(base, reference)
            for sub in ("scores",):
                if (run / sub).exists():
                    subprocess.run(["cp", "-r", str(run / sub), str(reference / sub)], check=True)
            row["select_in_memory"] = in_child("select-in-memory", reference, config)
            row["select_in_memory"]["same_manifest"] = manifests_equal(run, reference)
            subprocess.run(["rm", "-rf", str(reference)], check=True)
        results.append(row)
        print(json.dumps(summary_line(row)), file=sys.stderr, flush=True)
    subprocess.run(["rm", "-rf", str(base), str(tmp / f"n{n}-sqrt")], check=True)
    return results


def summary_line(row: dict) -> dict:
    n = row["n"]
    line = {"n": n, "k_mode": row["k_mode"], "k": row["k"]}
    steps = [s for s in ("cluster", "measure", "select") if s in row]
    for step in steps:
        line[f"{step}_us_per_row"] = round(row[step]["seconds"] / n * 1e6, 3)
        if "cpu_seconds" in row[step]:  # the machine is shared: CPU time is the steadier figure
            line[f"{step}_cpu_us_per_row"] = round(row[step]["cpu_seconds"] / n * 1e6, 3)
    if len(steps) == 3:
        line["cluster+measure+select_us_per_row"] = round(sum(row[s]["seconds"] for s in steps) / n * 1e6, 3)
    line["select_peak_rss_mib"] = round(row["select"]["peak_rss_mib"])
    line["select_rss_after_imports_mib"] = round(row["select"]["rss_after_imports_mib"])
    line["select_own_rss_mib"] = line["select_peak_rss_mib"] - line["select_rss_after_imports_mib"]
    if "select_in_memory" in row:
        line["in_memory_select_peak_rss_mib"] = round(row["select_in_memory"]["peak_rss_mib"])
        line["in_memory_select_own_rss_mib"] = round(row["select_in_memory"]["peak_rss_mib"]
                                                     - row["select_in_memory"]["rss_after_imports_mib"])
        line["in_memory_select_us_per_row"] = round(row["select_in_memory"]["seconds"] / n * 1e6, 3)
        line["in_memory_select_cpu_us_per_row"] = round(row["select_in_memory"]["cpu_seconds"] / n * 1e6, 3)
        line["same_manifest"] = row["select_in_memory"]["same_manifest"]
    return line


def ratios(lines: list[dict]) -> list[dict]:
    """Each size against the smallest of the same k mode, measured in this run."""
    out = []
    for mode in ("fixed", "sqrt"):
        rows = [r for r in lines if r["k_mode"] == mode]
        if not rows:
            continue
        first = rows[0]
        for r in rows:
            out.append({"n": r["n"], "k_mode": mode, "k": r["k"], **{
                f"{name}_vs_smallest": round(r[name] / first[name], 3) if first[name] else None
                for name in ("cluster+measure+select_us_per_row", "select_us_per_row", "select_cpu_us_per_row",
                             "cluster_cpu_us_per_row", "measure_cpu_us_per_row", "cluster_us_per_row",
                             "measure_us_per_row", "select_peak_rss_mib", "select_own_rss_mib") if name in r}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,4000000,10000000")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--fixed-k", type=int, default=256)
    ap.add_argument("--part-rows", type=int, default=250_000)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--keep", type=float, default=0.3)
    ap.add_argument("--baseline-up-to", type=int, default=4_000_000)
    ap.add_argument("--select-only", action="store_true", help="synthetic scores, select alone (no cluster/measure)")
    ap.add_argument("--k-modes", default="fixed,sqrt", type=lambda s: s.split(","))
    ap.add_argument("--tmp", default=None, help="where the runs are written (default: a temporary folder)")
    ap.add_argument("--child")
    ap.add_argument("--run")
    ap.add_argument("--config")
    add_json_option(ap, "select_scaling")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.run, json.loads(args.config))))
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        how = measure_select_only if args.select_only else measure
        rows = [row for n in sizes for row in how(Path(tmp), n, args)]
    lines = [summary_line(r) for r in rows]
    result = {"dim": args.dim, "keep": args.keep, "part_rows": args.part_rows, "per_size": lines,
              "ratios": ratios(lines)}
    print(json.dumps(result, indent=2))
    write(args.json_path, "select_scaling", title=__doc__.splitlines()[0], result=result,
          headline=headline(result), tables=tables(result))


def headline(r: dict) -> str:
    first, last = r["ratios"][0]["n"], r["ratios"][-1]["n"]
    grown = [x for x in r["ratios"] if x["n"] == last]
    key = "cluster+measure+select_us_per_row_vs_smallest"
    key = key if all(key in x for x in grown) else "select_us_per_row_vs_smallest"
    return (f"µs per row at {last:,} rows against {first:,}: "
            + ", ".join(f"{x[key]}× (k {x['k_mode']})" for x in grown))


def tables(r: dict) -> list[dict]:
    ratio = {(x["n"], x["k_mode"]): x for x in r["ratios"]}
    rows = []
    for line in r["per_size"]:
        x = ratio.get((line["n"], line["k_mode"]), {})
        total = line.get("cluster+measure+select_us_per_row", line["select_us_per_row"])
        key = "cluster+measure+select_us_per_row_vs_smallest"
        rows.append([f"{line['n']:,}", line["k"], total, x.get(key, x.get("select_us_per_row_vs_smallest")),
                     line["select_own_rss_mib"], line.get("in_memory_select_own_rss_mib", "(not run)"),
                     {True: "yes", False: "**no**"}.get(line.get("same_manifest"), "(not run)")])
    steps = "cluster + measure + select" if "cluster+measure+select_us_per_row" in r["per_size"][0] else "select"
    return [table(f"Wall µs per row ({steps}), select's own peak RSS (MiB)",
                  ["rows", "k", "µs per row", "vs smallest", "select's own RSS", "in-memory select's own RSS",
                   "same manifest"], rows)]


if __name__ == "__main__":
    main()
