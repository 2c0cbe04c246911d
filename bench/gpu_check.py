"""The GPU check: the CUDA tests, the embed benchmark on CUDA and faiss-gpu k-means, into one JSON.

    python bench/gpu_check.py [--rows 10000000] [--dim 512] [--out bench/results/gpu_check.json]

Run it on a machine with a CUDA GPU (and `pip install 'datapruner[gpu]'` for faiss-gpu). It records:
`pytest -m gpu` (passed, failed, skipped), bench/embed_throughput.py on CUDA (img/s and MFU), and k-means with
faiss on the GPUs at --rows × --dim, k = √rows (seconds, iterations, objective), then the exact assignment of
every row (rows/s, the share rechecked). Without a GPU it writes what it found and says that nothing ran.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gpu_tests() -> dict:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(ROOT / "tests")], cwd=ROOT,
                          capture_output=True, text=True)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    return {"exit": done.returncode, "summary": last, **counts}


def embed_bench(out: Path) -> dict:
    path = out.with_name("gpu_check_embed.json")
    done = subprocess.run([sys.executable, str(ROOT / "bench/embed_throughput.py"), "--device", "cuda", "--samples",
                           "4000", "--json", str(path)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        return {"exit": done.returncode, "stderr_tail": done.stderr[-2000:]}
    return json.loads(path.read_text())


def faiss_kmeans_at_scale(rows: int, dim: int) -> dict:
    import numpy as np
    import torch

    from datapruner.cluster.faiss_backend import gpu_count
    from datapruner.cluster.kmeans import faiss_kmeans, initial_centroids
    from datapruner.cluster.nearest import CentroidIndex

    k = round(math.sqrt(rows))
    g = torch.Generator(device="cuda").manual_seed(0)
    centers = torch.randn(4 * k, dim, device="cuda", generator=g)
    picks = torch.randint(0, 4 * k, (rows,), device="cuda", generator=g)
    x = centers[picks] + 0.7 * torch.randn(rows, dim, device="cuda", generator=g)
    x = torch.nn.functional.normalize(x, dim=1).cpu().numpy()
    start = initial_centroids(x, k, np.random.default_rng(0))
    t = time.perf_counter()
    centroids, iterations = faiss_kmeans(x, start, 20, 0, "cuda")
    fit_s = time.perf_counter() - t
    index = CentroidIndex(centroids, "cuda")
    t = time.perf_counter()
    ids, sims = index.nearest(x)
    assign_s = time.perf_counter() - t
    return {"faiss_gpus": gpu_count(), "rows": rows, "dim": dim, "k": k, "kmeans_seconds": round(fit_s, 2),
            "iterations": iterations, "objective": float(sims.astype(np.float64).sum()),
            "assign_rows_per_s": round(rows / assign_s), "rechecked_share": index.stats.rechecked / rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/gpu_check.json")
    args = ap.parse_args()
    import torch

    result: dict = {"cuda": torch.cuda.is_available()}
    if not result["cuda"]:
        result["note"] = "no CUDA GPU on this machine: nothing ran"
    else:
        result["gpu"] = torch.cuda.get_device_name()
        for name, check in (("gpu_tests", gpu_tests), ("embed", lambda: embed_bench(args.out)),
                            ("faiss_kmeans", lambda: faiss_kmeans_at_scale(args.rows, args.dim))):
            try:
                result[name] = check()
            except Exception as exc:  # one failing check must not hide the others' numbers
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
