"""Cluster + measure + select on N synthetic precomputed embeddings (default 1M × 512).

    python bench/cluster_score_select.py [--n 1000000] [--dim 512] [--parts 20] [--keep 0.3] [--json PATH]

Reports wall time per step, peak RSS, and the assignment's speed as a fraction of a plain
float32 matrix multiply (numpy sgemm of the same shapes on the same rows, run interleaved with it in
this process: the physical limit of a brute-force assignment on this machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from publish import add_json_option, table, write

from datapruner import api
from datapruner.config import Config
from datapruner.embed.outputs import METADATA_SCHEMA
from datapruner.io.atomic import save_npy, save_parquet
from datapruner.io.rundir import RunDir, part_id


def write_synthetic_run(run: RunDir, n: int, dim: int, parts: int, concepts: int, seed: int = 0,
                        copies: float = 0.0) -> None:
    """A mixture of `concepts` directions plus noise, L2-normalised, float16, in the embeddings layout; a
    `copies` share replaced by perturbed copies of earlier rows of the part (similarity ≈ 0.90–0.999)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((concepts, dim)).astype(np.float32)
    shards = [f"synthetic/{i:05d}.tar" for i in range(parts)]
    run.update_run_json(shards=shards, source="synthetic", embed={"inputs": {"synthetic": seed}, "token": "synthetic"})
    per = n // parts
    for i, shard in enumerate(shards):
        x = centers[rng.integers(0, concepts, per)] + rng.standard_normal((per, dim), dtype=np.float32) * 0.7
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        if copies > 0:
            dup = np.flatnonzero(rng.random(per) < copies)
            dup = dup[dup > 0]
            source = (rng.random(len(dup)) * dup).astype(np.int64)
            noise = rng.standard_normal((len(dup), dim), dtype=np.float32) * rng.uniform(0.03, 0.45, (len(dup), 1))
            x[dup] = x[source] + noise.astype(np.float32) / np.sqrt(dim)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        part = part_id(i, parts)
        save_npy(run.img_emb(part), x.astype(np.float16))
        rows = {"shard": [shard] * per, "key": [f"{i:05d}{j:07d}" for j in range(per)],
                "offset": np.arange(per) * 4096, "length": np.full(per, 4096)}
        save_parquet(run.metadata(part), pa.table(rows).cast(pa.schema(
            [f for f in METADATA_SCHEMA if f.name in rows])))
        run.write_marker("embed", part, "synthetic", [run.img_emb(part), run.metadata(part)])


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def assignment_vs_gemm(run: RunDir) -> tuple[float, float, int]:
    """Seconds for the assignment (datapruner's exact nearest centroid, chunked, float16 in) and for a plain float32
    sgemm of the same shapes on the same rows, interleaved part by part so machine noise hits both."""
    from datapruner.cluster.assign import assign
    from datapruner.cluster.nearest import CentroidIndex
    from datapruner.embed.outputs import read_img_emb

    centroids = np.load(run.centroids)
    index = CentroidIndex(centroids, "cpu")
    chunk = index.chunk_rows
    t_assign = t_gemm = 0.0
    n = 0
    for part in run.part_ids():
        emb = np.asarray(read_img_emb(run, part))
        x32 = emb.astype(np.float32)
        t = time.perf_counter()
        assign(emb, index)
        t_assign += time.perf_counter() - t
        t = time.perf_counter()
        for lo in range(0, len(x32), chunk):
            x32[lo:lo + chunk] @ centroids.T
        t_gemm += time.perf_counter() - t
        n += len(emb)
    return t_assign, t_gemm, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--keep", type=float, default=0.3)
    ap.add_argument("--concepts", type=int, default=2000)
    add_json_option(ap, "cluster_score_select")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        _, t_gen = timed(write_synthetic_run, run, args.n, args.dim, args.parts, args.concepts)
        cfg = Config(device="cpu", keep=args.keep, budget="cluster")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        clusters, t_cluster = timed(api.cluster, run.root, cfg)
        _, t_measure = timed(api.measure, run.root, cfg, progress=False)
        summary, t_select = timed(api.select, run.root, args.keep, cfg)
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        k = clusters["cluster"]["clusters"]
        t_assign, t_gemm, n = assignment_vs_gemm(run)
    flops = 2.0 * n * args.dim * k
    result = {
        "n": n, "dim": args.dim, "clusters": k, "kmeans_sample": clusters["cluster"]["sample"],
        "seconds": {"generate": round(t_gen, 1), "cluster": round(t_cluster, 1), "measure": round(t_measure, 1),
                    "select": round(t_select, 1),
                    "cluster+measure+select": round(t_cluster + t_measure + t_select, 1)},
        "peak_rss_mib": {"before_cluster": rss_before // 1024, "after_select": peak_rss // 1024},
        "embeddings_mib_float16": round(n * args.dim * 2 / 2**20),
        "assignment": {"seconds": round(t_assign, 2), "gflops": round(flops / t_assign / 1e9, 1),
                       "plain_sgemm_seconds": round(t_gemm, 2), "sgemm_gflops": round(flops / t_gemm / 1e9, 1),
                       "fraction_of_sgemm": round(t_gemm / t_assign, 3)},
        "kept": summary["select"]["counts"]["kept"],
    }
    print(json.dumps(result, indent=2))
    write(args.json_path, "cluster_score_select", title=__doc__.splitlines()[0], result=result,
          headline=headline(result), tables=tables(result))


def headline(r: dict) -> str:
    s = r["seconds"]
    return (f"{r['n']:,} × {r['dim']}, k = {r['clusters']}: {s['cluster+measure+select']} s, "
            f"peak RSS {r['peak_rss_mib']['after_select']} MiB")


def tables(r: dict) -> list[dict]:
    s, a = r["seconds"], r["assignment"]
    return [table("Wall seconds per step", ["rows", "dim", "k", "k-means sample", "cluster", "measure", "select",
                                            "all three", "peak RSS", "float16 embeddings", "assignment / sgemm"],
                  [[f"{r['n']:,}", r["dim"], r["clusters"], f"{r['kmeans_sample']:,}", f"{s['cluster']} s",
                    f"{s['measure']} s", f"{s['select']} s", f"**{s['cluster+measure+select']} s**",
                    f"{r['peak_rss_mib']['after_select']} MiB", f"{r['embeddings_mib_float16']} MiB",
                    f"{a['fraction_of_sgemm']}"]])]


if __name__ == "__main__":
    main()
