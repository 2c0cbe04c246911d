"""The SemDeDup → DBP recipe: datapruner against a plain faiss + numpy implementation, in one process.

    taskset -c 0 python bench/semdedup_dbp_recipe.py [--rows 1000000] [--dim 512] [--clusters 500] [--threads 1]
                                                     [--json PATH]

Data: `--rows` clustered unit rows (concept directions plus noise; a share are near-copies of earlier
rows, at similarities around 1 − eps), float16, in the precomputed-embeddings layout.
datapruner: `cluster` (faiss k-means from a k-means++ start, at most 100 iterations, relative-objective stop) then `select --metric dbp
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

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_score_select import write_synthetic_run  # noqa: E402
from publish import add_json_option, table, write  # noqa: E402
from process_meter import PHASE_START_RSS, now, peak_rss_mib, reset_peak_rss  # noqa: E402
from recipe_baseline import EPS, ITERATIONS, KEEP, baseline_kmeans, objective, run_baseline  # noqa: E402

from datapruner import api  # noqa: E402
from datapruner.config import Config  # noqa: E402
from datapruner.embed.outputs import read_img_emb  # noqa: E402
from datapruner.io.rundir import RunDir  # noqa: E402

SELECT_STEPS = ("assign", "fit", "dedup", "measure", "select")  # `datapruner select` without its HTML report (timed apart)


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

    def count_returned(self, module, name: str) -> list:
        """Wraps module.name, which returns (value, count): the counts, as the calls return."""
        original, counts = getattr(module, name), []

        def counted(*args, **kwargs):
            value, count = original(*args, **kwargs)
            counts.append(count)
            return value, count

        setattr(module, name, counted)
        self._saved.append((module, name, original))
        return counts

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
    iterations = clock.count_returned(kmeans, "faiss_kmeans")
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
            "rss_select": rss_select, "steps": clock.seconds, "iterations": sum(iterations)}


def kept_keys(run: RunDir) -> set:
    table = pq.read_table(run.keep_parquet, columns=["key", "kept"])
    keys = table.column("key").to_numpy(zero_copy_only=False)
    return set(keys[table.column("kept").to_numpy(zero_copy_only=False)])


def semdedup_pairs(run: RunDir) -> float:
    """Σ over clusters of n_c(n_c − 1)/2: the similarities SemDeDup needs."""
    from datapruner.cluster.assign import part_assignment

    k = len(np.load(run.centroids))
    sizes = sum(np.bincount(part_assignment(run, p)[0], minlength=k) for p in run.part_ids()).astype(np.int64)
    return float((sizes.astype(np.float64) * (sizes - 1) / 2).sum())


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
    add_json_option(ap, "semdedup_dbp_recipe")
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
    result = report(measure(args), args)
    print(json.dumps(result, indent=2))
    write(args.json_path, "semdedup_dbp_recipe", title=__doc__.splitlines()[0], result=result,
          headline=headline(result), tables=tables(result), notes=notes(result))


def headline(r: dict) -> str:
    s = r["seconds"]
    return (f"{s['datapruner_over_baseline']} of the baseline's CPU time ({s['datapruner']['total']} s vs "
            f"{s['baseline']['total']} s), {r['rows']:,} × {r['dim']}, k = {r['clusters']}, {r['threads']} thread(s)")


def tables(r: dict) -> list[dict]:
    s, g = r["seconds"], r["gflops"]
    ours, base = s["datapruner"], s["baseline"]

    def cell(seconds, rate=None):
        return "—" if seconds is None else f"{seconds} s" + (f", {rate} GFLOP/s" if rate else "")

    rows = [["k-means", f"{cell(ours.get('kmeans'), g['datapruner']['kmeans'])}, "
                        f"{r['kmeans']['datapruner_iterations']} iterations",
             f"{cell(base.get('kmeans'), g['baseline']['kmeans'])}, {r['kmeans']['baseline_iterations']} iterations"],
            ["assignment", cell(ours.get("assign"), g["datapruner"]["assign"]),
             cell(base.get("assign"), g["baseline"]["assign"])],
            ["gather rows by cluster", "(inside the SemDeDup dedup step)", cell(base.get("gather"))],
            ["SemDeDup similarities", cell(ours.get("semdedup_similarity"), g["datapruner"]["semdedup_similarity"]),
             cell(base.get("semdedup_similarity"), g["baseline"]["semdedup_similarity"])],
            ["DBP quotas", "(inside select)", cell(base.get("dbp"))],
            [f"all (select's HTML report, {ours['report_not_counted']} s, not counted)", f"**{ours['total']} s**",
             f"**{base['total']} s** (ratio **{s['datapruner_over_baseline']}**)"]]
    return [table("Process CPU seconds per step", ["step", "datapruner", "baseline"], rows)]


def notes(r: dict) -> list[str]:
    k, rss, rates = r["kmeans"], r["peak_rss_mib"], r["core_gemm_gflops"]
    return [f"Products: {r['gemm_precision']}; this core's GEMM at 2048²: fp32 {rates['fp32_numpy']}, "
            f"bf16 {rates['bf16_torch']} GFLOP/s.",
            f"Kept sets identical ({r['kept']:,} kept); k-means objective {k['objective_datapruner']} vs the "
            f"baseline's {k['objective_baseline']} (relative gap {k['relative_gap']}).",
            f"Peak RSS: datapruner cluster {rss['datapruner_cluster']} MiB, select {rss['datapruner_select']} MiB; "
            f"baseline k-means {rss['baseline_kmeans']} MiB, assignment to DBP {rss['baseline_assign_to_dbp']} MiB."]


if __name__ == "__main__":
    main()
