"""Bench: join N synthetic precomputed rows (parts of 10⁶, rows shuffled across parts as in LAION's
shipped layout) to shards of 10⁴ samples, through the join's own code path (embed/join.py index_part,
join_bucket; embed/precomputed.py build_part), and print time and peak RSS per 10⁶ rows for each phase.

The shard side is synthesised (the scan step's outputs written with join.save_scan) instead of 10⁷ tar
samples: scanning tars costs what reading them costs and is not the join.

    .venv/bin/python bench/join_embeddings.py --rows 1000000 10000000 [--dim 32] [--dir /tmp/joinbench] [--json PATH]

Each phase runs in its own process, so its peak RSS is its own. Flat memory (the same peak at 10⁶ and 10⁷)
is the bar: a phase holds one part (index), one bucket (join) or one shard (build), never the dataset.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from publish import add_json_option, table, write  # noqa: E402

PART_ROWS = 1_000_000
SHARD_ROWS = 10_000


def _keys(lo: int, hi: int) -> pa.Array:
    return pa.array(np.char.add("k", np.char.zfill(np.arange(lo, hi).astype("U10"), 10)), pa.string())


def make(root: Path, rows: int, dim: int, seed: int = 0) -> None:
    """Source parts (img_emb + metadata with key, url, similarity), the shard side as scan writes it,
    and run.json with the layout."""
    from datapruner.embed.join import POS, SCAN_ERRORS, VALUE, save_scan
    from datapruner.embed.layouts import detect
    from datapruner.embed.outputs import METADATA_SCHEMA
    from datapruner.io.atomic import write_json
    from datapruner.io.rundir import RunDir, part_id

    rng = np.random.default_rng(seed)
    emb, run_root = root / "emb", root / "run"
    (emb / "img_emb").mkdir(parents=True)
    (emb / "metadata").mkdir()
    order = rng.permutation(rows)  # global row r of the source holds sample order[r]
    n_parts = -(-rows // PART_ROWS)
    for p in range(n_parts):
        ids = order[p * PART_ROWS:(p + 1) * PART_ROWS]
        keys = pa.array(np.char.add("k", np.char.zfill(ids.astype("U10"), 10)), pa.string())
        x = rng.standard_normal((len(ids), dim), dtype=np.float32)
        np.save(emb / f"img_emb/img_emb_{p:04d}.npy", (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16))
        pq.write_table(pa.table({"key": keys, "url": pa.compute.binary_join_element_wise("https://x/", keys, ""),
                                 "similarity": pa.array(rng.random(len(ids), dtype=np.float32))}),
                       emb / f"metadata/metadata_{p:04d}.parquet")
    n_shards = -(-rows // SHARD_ROWS)
    shards = [f"/synthetic/{s:06d}.tar" for s in range(n_shards)]
    layout = detect(emb)
    run_root.mkdir()
    write_json(run_root / "run.json", {"shards": shards, "precomputed": layout.to_dict()})
    run = RunDir(run_root)
    for s in range(n_shards):
        lo, hi = s * SHARD_ROWS, min(rows, (s + 1) * SHARD_ROWS)
        n = hi - lo
        keys = pa.array(np.char.zfill(np.arange(lo, hi).astype("U10"), 10), pa.string())
        cols = {"shard": pa.array([shards[s]] * n, pa.string()),
                "key": keys, "offset": pa.array(np.arange(n, dtype=np.int64) * 4096),
                "length": pa.array(np.full(n, 4096, np.int64)), "uid": pa.nulls(n, pa.string()),
                "caption": pa.nulls(n, pa.string()), "label": pa.nulls(n, pa.int64())}
        samples = pa.table(cols, schema=METADATA_SCHEMA)
        samples = samples.append_column(POS, pa.array(np.arange(n, dtype=np.int64))) \
                         .append_column(VALUE, _keys(lo, hi))
        save_scan(run, layout, part_id(s, n_shards), samples, SCAN_ERRORS.empty_table())


def _phase(name: str, root: str, queue) -> None:
    from datapruner.embed.join import index_part, join_bucket
    from datapruner.embed.layouts import Layout
    from datapruner.embed.precomputed import build_part
    from datapruner.io.rundir import RunDir

    run = RunDir(root)
    layout = Layout.from_dict(run.precomputed)
    t0 = time.perf_counter()
    out: dict = {}
    if name == "index":
        for p in layout.part_ids():
            index_part(run, layout, p)
    elif name == "join":
        for b in layout.bucket_ids():
            for k, v in join_bucket(run, layout, int(b), b).items():
                out[k] = out.get(k, 0) + v
    elif name == "build":
        for part in run.part_ids():
            build_part(run, layout, part)
    queue.put({"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               **out})


def _in_child(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _make_child(root: str, rows: int, dim: int, queue) -> None:
    t0 = time.perf_counter()
    make(Path(root), rows, dim)
    queue.put({"seconds": time.perf_counter() - t0,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def bench(rows: int, dim: int, base: Path) -> dict:
    root = base / f"n{rows}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    result = {"rows": rows, "make": _in_child(_make_child, str(root), rows, dim)}
    for name in ("index", "join", "build"):
        result[name] = _in_child(_phase, name, str(root / "run"))
    joined = root / "run/join"
    result["join_files_mb"] = round(sum(p.stat().st_size for p in joined.rglob("*") if p.is_file()) / 2**20, 1)
    shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--dir", default="/tmp/joinbench")
    add_json_option(ap, "join_embeddings")
    args = ap.parse_args()
    base = Path(args.dir)
    results = []
    print(f"{'rows':>10} {'phase':>6} {'s':>8} {'s/1e6':>7} {'peak MB':>8}")
    for rows in args.rows:
        r = bench(rows, args.dim, base)
        for name in ("make", "index", "join", "build"):
            ph = r[name]
            print(f"{rows:>10} {name:>6} {ph['seconds']:8.1f} {ph['seconds'] / (rows / 1e6):7.2f} {ph['peak_rss_mb']:8.0f}")
        print(f"{rows:>10} join files {r['join_files_mb']} MiB ({r['join_files_mb'] / (rows / 1e6):.1f} MiB per 10⁶ rows); "
              f"unmatched {r['join'].get('unmatched_embeddings')}")
        print(json.dumps(r), flush=True)
        results.append(r)
    result = {"dim": args.dim, "per_size": results}
    write(args.json_path, "join_embeddings", title="The external hash join of precomputed embeddings to the shards: "
          "time and peak RSS per phase", result=result, headline=headline(result), tables=tables(result))


PHASES = ("make", "index", "join", "build")


def headline(r: dict) -> str:
    peaks = {name: [round(x[name]["peak_rss_mb"]) for x in r["per_size"]] for name in PHASES[1:]}
    sizes = " / ".join(f"{x['rows']:,}" for x in r["per_size"])
    return f"peak RSS (MB) at {sizes} rows: " + ", ".join(f"{n} {' / '.join(map(str, v))}" for n, v in peaks.items())


def tables(r: dict) -> list[dict]:
    rows = []
    for x in r["per_size"]:
        per = x["rows"] / 1e6
        for name in PHASES:
            rows.append([f"{x['rows']:,}", name, round(x[name]["seconds"], 1), round(x[name]["seconds"] / per, 2),
                         round(x[name]["peak_rss_mb"])])
        rows.append([f"{x['rows']:,}", "join files", f"{x['join_files_mb']} MiB", "", ""])
    return [table(f"Phases, each in its own process (make: the synthetic inputs, not timed as the join), dim {r['dim']}",
                  ["rows", "phase", "s", "s per 10⁶ rows", "peak RSS MB"], rows)]


if __name__ == "__main__":
    main()
