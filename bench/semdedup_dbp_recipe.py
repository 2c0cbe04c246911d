"""The SemDeDup → DBP recipe: datapruner against a plain faiss + numpy implementation, in one process.

    taskset -c 0 python bench/semdedup_dbp_recipe.py [--rows 1000000] [--dim 512] [--clusters 500] [--threads 1]

Data: `--rows` clustered unit rows (concept directions plus noise; a share are near-copies of earlier
rows, at similarities around 1 − eps), float16, in the precomputed-embeddings layout.
datapruner: `cluster` (k-means, at most 100 iterations, relative-objective stop) then `select --metric dbp
--filter semdedup:eps=E` (assign, SemDeDup and DBP fits, scores, manifest); select's HTML report is timed
apart and not counted (the baseline has none).
Baseline: faiss.Kmeans (spherical, 100 iterations, fp32) on the same sample; then, on datapruner's
centroids (so that kept sets can be compared), a faiss flat-IP assignment, SemDeDup as numpy fp32
blocks of the ordered cluster (max similarity to earlier rows), d_inter by faiss, DBP quotas
(datapruner.select.quotas.cluster_quotas: the integer rounding rule, O(k)), then the quota's first rows.
Prints both times and their ratio, asserts identical kept sets, the k-means objective of both, the
FLOP rate of each GEMM-bound step against this core's fp32 (numpy) and bf16 (torch) GEMM rates
measured in this process, and the peak RSS of each phase (VmHWM, reset before it). Times are the
process's CPU seconds (one thread: the work done, not what the machine's other tenants took), wall
seconds beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if __name__ == "__main__":  # thread counts must be fixed before numpy / torch load their BLAS
    _threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_score_select import write_synthetic_run  # noqa: E402

from datapruner import api  # noqa: E402
from datapruner.config import Config  # noqa: E402
from datapruner.embed.outputs import read_img_emb, unit_rows  # noqa: E402
from datapruner.io.rundir import RunDir  # noqa: E402

EPS = 0.05
KEEP = 0.3
ITERATIONS = 100
SELECT_STEPS = ("assign", "fit", "score", "select")  # `datapruner select` without its HTML report (timed apart)


def peak_rss_mib() -> int:
    """This process's peak RSS since the last reset_peak_rss (VmHWM), or since it started (ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


PHASE_START_RSS = []  # MiB resident when each phase began (what the process already held)


def reset_peak_rss() -> None:
    """Start a phase's peak from the current RSS (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    PHASE_START_RSS.append(peak_rss_mib())


# data ------------------------------------------------------------------------------------------------

# this core's GEMM rates ---------------------------------------------------------------------------------

def gemm_rates(size: int = 2048, reps: int = 4) -> dict:
    import torch

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size ** 3
    rates = {}
    for name, x, mult in (("fp32_numpy", a, lambda x: x @ x.T),
                          ("bf16_torch", torch.from_numpy(a).bfloat16(), lambda x: torch.nn.functional.linear(x, x))):
        mult(x)
        best = min(_seconds(mult, x) for _ in range(reps))
        rates[name] = round(flops / best / 1e9, 1)
    return rates


def _seconds(fn, *args) -> float:
    t = now()
    fn(*args)
    return now() - t


def now() -> float:
    """The clock every figure uses: this process's CPU seconds. With one thread that is the work done, whatever
    else shares the core (on a shared machine wall time mostly measures the neighbours); wall times are printed
    beside it."""
    return time.process_time()


# instrumentation of datapruner's GEMM-bound steps --------------------------------------------------------

class StepClock:
    """Wraps module functions to add up their seconds (and count calls) while datapruner runs."""

    def __init__(self):
        self.seconds, self.calls, self._saved = {}, {}, []

    def wrap(self, module, name: str, label: str) -> None:
        original = getattr(module, name)

        def timed(*args, **kwargs):
            t = now()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + now() - t
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(module, name, timed)
        self._saved.append((module, name, original))

    def restore(self) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)


def run_datapruner(run: RunDir, k: int, threads: int) -> dict:
    import torch

    from datapruner.cluster import assign, kmeans
    from datapruner.metrics import semdedup

    torch.set_num_threads(threads)
    clock = StepClock()
    clock.wrap(kmeans, "fit_centroids", "kmeans")
    clock.wrap(kmeans, "updated_centroids", "kmeans_iterations")
    clock.wrap(assign, "assign", "assign")
    clock.wrap(semdedup, "max_similarity_to_earlier", "semdedup_similarity")
    cfg = Config(device="cpu", clusters=k, kmeans_iters=ITERATIONS, metric="dbp", order="hard",
                 filters=({"name": "semdedup", "eps": EPS},))
    try:
        reset_peak_rss()
        t, wall = now(), time.perf_counter()
        api.cluster(run.root, cfg)
        t_cluster = now() - t
        rss_cluster = peak_rss_mib()
        reset_peak_rss()
        t = now()
        for step in SELECT_STEPS:
            api.step(step, run.root, cfg.replace(keep=KEEP), progress=False)
        t_select = now() - t
        wall = time.perf_counter() - wall
        rss_select = peak_rss_mib()
        t = now()
        api.step("report", run.root, cfg.replace(keep=KEEP), progress=False)
        t_report = now() - t
    finally:
        clock.restore()
    return {"cluster": t_cluster, "select": t_select, "report": t_report, "wall": wall, "rss_cluster": rss_cluster,
            "rss_select": rss_select, "steps": clock.seconds, "iterations": clock.calls.get("kmeans_iterations", 0)}


def kept_keys(run: RunDir) -> set:
    table = pq.read_table(run.keep_parquet, columns=["key", "kept"])
    keys = table.column("key").to_numpy(zero_copy_only=False)
    return set(keys[table.column("kept").to_numpy(zero_copy_only=False)])


def semdedup_pairs(run: RunDir) -> float:
    """Σ over clusters of n_c(n_c − 1)/2: the similarities SemDeDup needs."""
    from datapruner.metrics.cluster_groups import assigned_sizes

    sizes, _ = assigned_sizes(run)
    return float((sizes.astype(np.float64) * (sizes - 1) / 2).sum())


# the baseline -----------------------------------------------------------------------------------------

def baseline_kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, float, int]:
    """faiss's spherical k-means, all 100 iterations (faiss ≥ 1.9 would stop early without early_stop_threshold)."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=ITERATIONS, spherical=True, seed=seed,
                      max_points_per_centroid=max(256, len(x) // k + 1), verbose=False, early_stop_threshold=-1.0)
    t = now()
    km.train(x)
    return km.centroids.copy(), now() - t, len(km.iteration_stats)


def objective(x: np.ndarray, centroids: np.ndarray) -> float:
    """Σ_i max_j x_i·c_j (what spherical k-means maximises), in float64 from faiss's exact fp32 search."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    return float(index.search(x, 1)[0][:, 0].astype(np.float64).sum())


def baseline_assign(run: RunDir, centroids: np.ndarray):
    """faiss flat IP over every row; the distance 1 − x·c to the chosen centroid with x·c summed along the row in
    float32, as datapruner writes it (faiss's own value can differ in the last bit, which alone would reorder rows
    whose distances differ by 1e-7 at a quota boundary)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    embs, clusters, dists = [], [], []
    for part in run.part_ids():
        x = unit_rows(read_img_emb(run, part))
        _, ids = index.search(x, 1)
        ids = ids[:, 0].astype(np.int32)
        sim = (x * centroids[ids]).sum(axis=1)
        embs.append(x)
        clusters.append(ids)
        dists.append(1.0 - sim)
    return embs, clusters, dists


def baseline_semdedup(emb: np.ndarray, cluster: np.ndarray, dist: np.ndarray, part: np.ndarray, row: np.ndarray,
                      block: int = 4096) -> np.ndarray:
    """Hard order (farthest first, ties by part, row); max fp32 similarity to earlier rows of the cluster."""
    idx = np.lexsort((row, part, -dist, cluster))
    starts = np.r_[0, np.flatnonzero(np.diff(cluster[idx])) + 1, len(idx)]
    scores = np.empty(len(idx), np.float32)
    for lo, hi in zip(starts[:-1], starts[1:]):
        members = idx[lo:hi]
        x = emb[members]
        best = np.full(len(x), -1.0, np.float32)
        for r in range(0, len(x), block):
            sim = x[r:r + block] @ x[:r + block].T
            sim[np.arange(sim.shape[1])[None, :] >= np.arange(r, r + len(sim))[:, None]] = -np.inf
            best[r:r + block] = np.maximum(sim.max(axis=1), -1.0)
        scores[members] = best
    scores[scores >= 1.0 - 2e-6] = 1.0
    return scores


def baseline_inter_distance(centroids: np.ndarray, l: int = 20) -> np.ndarray:
    import faiss

    c = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(c.shape[1])
    index.add(c)
    sim, ids = index.search(c, l + 1)
    sim = np.where(ids != np.arange(len(c))[:, None], sim, np.nan)
    nearest = np.sort(np.nan_to_num(sim, nan=-np.inf), axis=1)[:, ::-1][:, :l]
    return (1.0 - nearest).mean(axis=1).astype(np.float32)


def baseline_dbp_keep(cluster, dist, part, row, alive, d_inter, k_clusters, keep, tau=0.1, beta=0.5) -> np.ndarray:
    from datapruner.select.quotas import cluster_quotas

    score = (d_inter[cluster] * dist).astype(np.float32)
    sizes = np.bincount(cluster[alive], minlength=k_clusters)
    nonempty = sizes > 0
    d_intra = np.bincount(cluster[alive], dist[alive].astype(np.float64), k_clusters)
    complexity = np.bincount(cluster[alive], score[alive].astype(np.float64), k_clusters)
    complexity = np.divide(complexity, sizes, out=np.zeros(k_clusters), where=nonempty)
    del d_intra  # the recipe's C = mean(d_inter · dist) already holds d_intra
    logits = np.where(nonempty, complexity / tau, -np.inf)
    p = np.exp(logits - logits[nonempty].max())
    p /= p.sum()
    total = round(keep * len(cluster))
    lower = np.minimum(int(np.floor(beta * total / nonempty.sum())), sizes) * nonempty
    quotas = cluster_quotas(p * total, sizes, total, lower)
    order = np.lexsort((row, part, -score.astype(np.float64), cluster))
    order = order[alive[order]]
    starts = np.searchsorted(cluster[order], np.arange(k_clusters))
    rank = np.arange(len(order)) - starts[cluster[order]]
    kept = np.zeros(len(cluster), bool)
    kept[order[rank < quotas[cluster[order]]]] = True
    return kept


def run_baseline(run: RunDir, centroids: np.ndarray) -> dict:
    seconds, wall = {}, time.perf_counter()
    t = now()
    embs, clusters, dists = baseline_assign(run, centroids)
    seconds["assign"] = now() - t
    t = now()
    emb, cluster, dist = np.concatenate(embs), np.concatenate(clusters), np.concatenate(dists)
    del embs
    part = np.concatenate([np.full(len(c), p, np.int32) for p, c in enumerate(clusters)])
    row = np.concatenate([np.arange(len(c)) for c in clusters])
    seconds["gather"] = now() - t
    t = now()
    scores = baseline_semdedup(emb, cluster, dist, part, row)
    seconds["semdedup_similarity"] = now() - t
    del emb
    t = now()
    alive = ~(scores.astype(np.float64) > 1.0 - EPS)
    kept = baseline_dbp_keep(cluster, dist, part, row, alive, baseline_inter_distance(centroids), len(centroids), KEEP)
    seconds["dbp"] = now() - t
    keys = {f"{p:05d}{r:07d}" for p, r in zip(part[kept], row[kept])}
    return {"seconds": seconds, "kept": keys, "removed_by_semdedup": int((~alive).sum()), "rss": peak_rss_mib(),
            "wall": time.perf_counter() - wall}


# the report -------------------------------------------------------------------------------------------

def gflops(flops: float, seconds: float | None) -> float | None:
    return round(flops / seconds / 1e9, 1) if seconds else None


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=500)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--concepts", type=int, default=2000)
    ap.add_argument("--copies", type=float, default=0.1, help="share of rows that are near-copies of earlier ones")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def measure(args) -> dict:
    """datapruner's recipe, then the plain one on datapruner's centroids (so kept sets compare), in one process."""
    from datapruner.cluster.kmeans import load_sample, sample_rows, sample_size

    m = {"rates_before": gemm_rates()}
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        write_synthetic_run(run, args.rows, args.dim, args.parts, min(args.concepts, args.rows // 10), args.seed,
                            copies=args.copies)
        counts = [read_img_emb(run, p).shape[0] for p in run.part_ids()]
        m["n"] = n = sum(counts)
        m["k"] = k = min(args.clusters, n)
        m["ours"] = run_datapruner(run, k, args.threads)
        m["ours_kept"] = kept_keys(run)
        m["pairs"] = semdedup_pairs(run)
        m["centroids"] = np.load(run.centroids)
        m["size"] = sample_size(n, k, None)
        m["sample"] = load_sample(run, run.part_ids(), sample_rows(counts, m["size"], Config().seed))
        reset_peak_rss()
        wall = time.perf_counter()
        m["base_centroids"], m["t_base_kmeans"], m["base_iterations"] = baseline_kmeans(m["sample"], k, Config().seed)
        m["wall_base_kmeans"] = time.perf_counter() - wall
        m["rss_base_kmeans"] = peak_rss_mib()
        reset_peak_rss()
        m["base"] = run_baseline(run, m["centroids"])
    m["rates_after"] = gemm_rates()
    kept, base_kept = m["ours_kept"], m["base"]["kept"]
    assert kept == base_kept, f"kept sets differ: {len(kept ^ base_kept)} rows ({len(kept)} vs {len(base_kept)} kept)"
    return m


def gflops_table(m: dict, dim: int) -> dict:
    """The FLOP rate of each GEMM-bound step, datapruner's and the baseline's."""
    ours, base, st = m["ours"], m["base"], m["ours"]["steps"]
    flops = {"kmeans_iteration": 2.0 * m["size"] * m["k"] * dim, "assign": 2.0 * m["n"] * m["k"] * dim,
             "semdedup_similarity": 2.0 * m["pairs"] * dim}
    return {
        "datapruner": {"kmeans": gflops(flops["kmeans_iteration"] * ours["iterations"], st.get("kmeans")),
                       "assign": gflops(flops["assign"], st.get("assign")),
                       "semdedup_similarity": gflops(flops["semdedup_similarity"], st.get("semdedup_similarity"))},
        "baseline": {"kmeans": gflops(flops["kmeans_iteration"] * m["base_iterations"], m["t_base_kmeans"]),
                     "assign": gflops(flops["assign"], base["seconds"]["assign"]),
                     "semdedup_similarity": gflops(flops["semdedup_similarity"], base["seconds"]["semdedup_similarity"])},
    }


def report(m: dict, args) -> dict:
    from datapruner.cluster.gemm import gemm_precision

    ours, base = m["ours"], m["base"]
    obj_ours, obj_base = objective(m["sample"], m["centroids"]), objective(m["sample"], m["base_centroids"])
    t_ours = ours["cluster"] + ours["select"]
    t_base = m["t_base_kmeans"] + sum(base["seconds"].values())
    before, after = m["rates_before"], m["rates_after"]
    rates = {key: max(before[key], after[key]) for key in before}
    return {
        "rows": m["n"], "dim": args.dim, "clusters": m["k"], "kmeans_sample": m["size"], "eps": EPS, "keep": KEEP,
        "threads": args.threads, "gemm_precision": gemm_precision("cpu"),
        "core_gemm_gflops": {"fp32_numpy": rates["fp32_numpy"], "bf16_torch": rates["bf16_torch"],
                             "before": before, "after": after},
        "seconds": {
            "datapruner": {"total": round(t_ours, 1), "cluster": round(ours["cluster"], 1),
                           "select": round(ours["select"], 1), "report_not_counted": round(ours["report"], 1),
                           **{name: round(v, 2) for name, v in ours["steps"].items() if name != "kmeans_iterations"}},
            "baseline": {"total": round(t_base, 1), "kmeans": round(m["t_base_kmeans"], 1),
                         **{name: round(v, 2) for name, v in base["seconds"].items()}},
            "datapruner_over_baseline": round(t_ours / t_base, 3),
            "clock": "process CPU seconds (one thread)",
            "wall": {"datapruner": round(ours["wall"], 1), "baseline": round(m["wall_base_kmeans"] + base["wall"], 1)},
        },
        "kmeans": {"datapruner_iterations": ours["iterations"], "baseline_iterations": m["base_iterations"],
                   "objective_datapruner": round(obj_ours, 2), "objective_baseline": round(obj_base, 2),
                   "relative_gap": round((obj_base - obj_ours) / abs(obj_base), 6)},
        "gflops": gflops_table(m, args.dim),
        "peak_rss_mib": {"datapruner_cluster": ours["rss_cluster"], "datapruner_select": ours["rss_select"],
                         "baseline_kmeans": m["rss_base_kmeans"], "baseline_assign_to_dbp": base["rss"],
                         "resident_at_each_phase_start": PHASE_START_RSS[:4]},
        "kept": len(m["ours_kept"]), "removed_by_semdedup_baseline": base["removed_by_semdedup"],
        "kept_sets_identical": True,
    }


def main() -> None:
    args = parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    print(json.dumps(report(measure(args), args), indent=2))


if __name__ == "__main__":
    main()
