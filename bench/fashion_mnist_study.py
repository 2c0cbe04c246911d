"""The verify study on Fashion-MNIST: prune, train students with and without KD, check the claims.

    python bench/fashion_mnist_study.py [--out runs/fmnist_verify] [--seeds 0 1 2] [--epochs 20]

1. writes Fashion-MNIST as WebDataset shards (bench/fashion_mnist_shards.py: 6 train shards, 1 test shard);
2. embeds them with an unsupervised pixel-PCA (64 dims, fitted on the train pixels decoded from the shards,
   L2-normalised, float16) into the embedding-reader layout, and points a run at it (`--embeddings`):
   CLIP on 70k images does not fit a 2-core CPU budget and random-init CLIP features carry little signal;
3. clusters + scores the run with datapruner itself (k-means, prototypicality, el2n, dbp);
4. `api.verify`: an MLP teacher (2 × 512 hidden, 30 epochs) on all 60k training samples, then MLP students (2 × 128 hidden,
   on the 64-d embeddings) on random / proto_hard / proto_easy / el2n / dbp subsets at 0.1-1.0, 3 seeds,
   no KD and KD with alpha chosen from the fraction, in both budget regimes (fixed epochs: `--epochs`
   passes over each subset; fixed steps: `--steps-epochs` passes' worth of the full data);
5. an alpha sweep (both budgets, random subsets, alpha 0 / 0.25 / 0.5 / 0.75 / 1) for the
   "best KD weight grows as the kept fraction shrinks" claim;
6. a class-balanced pass (fixed epochs, no KD: every method applied inside each class), since score-ordered
   subsets at small fractions can starve classes (smallest class share is in every row).
Test accuracy is on the 10k Fashion-MNIST test split. Prints mean ± std tables and the claims;
everything lands in OUT/run/verify, OUT/run/verify_alpha_sweep and OUT/run/verify_class_balanced.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_shards import DEFAULT_SRC, write_fashion_mnist  # noqa: E402

from datapruner import api  # noqa: E402
from datapruner.config import Config  # noqa: E402
from datapruner.embed.outputs import save_npy, save_parquet  # noqa: E402
from datapruner.io.shards import list_shards, open_shard  # noqa: E402
from datapruner.io.tar_samples import iter_samples  # noqa: E402
from datapruner.verify.pipeline import VerifySpec  # noqa: E402


def run_verify(run, cfg, progress=True, **options):
    return api.verify(run, VerifySpec(**options), cfg, progress=progress)

PCA_DIM = 64


def shard_pixels(shard: str) -> tuple[np.ndarray, list[str], list[int], list[str]]:
    """(n, 784) uint8 pixels, keys, labels and captions of one shard, in tar order."""
    from PIL import Image
    import io

    pixels, keys, labels, captions = [], [], [], []
    with open_shard(shard) as stream:
        for sample in iter_samples(stream):
            pixels.append(np.asarray(Image.open(io.BytesIO(sample.members["png"])).convert("L"), np.uint8).reshape(-1))
            keys.append(sample.key)
            labels.append(int(sample.members["cls"]))
            captions.append(sample.members["txt"].decode())
    return np.stack(pixels), keys, labels, captions


def fit_pca(pixels: np.ndarray, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, (784, dim) projection) from up to 20k training images."""
    rng = np.random.default_rng(seed)
    sample = pixels[rng.choice(len(pixels), size=min(20000, len(pixels)), replace=False)].astype(np.float32) / 255.0
    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    return mean, vt[:dim].T


def write_pca_embeddings(shards: list[str], out: Path, mean: np.ndarray, proj: np.ndarray, parts: list) -> None:
    """Part i (= shard i in sorted order): img_emb_{i}.npy and metadata_{i}.parquet (key, label, caption)."""
    width = len(str(len(shards)))
    for i, (pixels, keys, labels, captions) in enumerate(parts):
        z = (pixels.astype(np.float32) / 255.0 - mean) @ proj
        z /= np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
        save_npy(out / f"img_emb/img_emb_{i:0{width}d}.npy", z.astype(np.float16))
        save_parquet(out / f"metadata/metadata_{i:0{width}d}.parquet",
                     pa.table({"key": keys, "label": pa.array(labels, pa.int64()), "caption": captions}))


def embed_splits(dirs: dict, out: Path) -> dict[str, Path]:
    """PCA embeddings for the train and test shards (fitted on train only); reused when present."""
    emb = {split: out / f"pca{PCA_DIM}" / split for split in dirs}
    if all((e / "metadata").is_dir() for e in emb.values()):
        return emb
    shards = {split: list_shards(str(d)) for split, d in dirs.items()}
    parts = {split: [shard_pixels(s) for s in shards[split]] for split in dirs}
    mean, proj = fit_pca(np.concatenate([p[0] for p in parts["train"]]), PCA_DIM)
    for split in dirs:
        write_pca_embeddings(shards[split], emb[split], mean, proj, parts[split])
    return emb


def print_tables(summary: dict, out: Path) -> None:
    print(f"\nteacher accuracy {100 * summary['teacher']['accuracy']:.2f}%  ({summary['n_train']} train / {summary['n_test']} test)")
    print((out / "summary.md").read_text())
    for fit in json.loads((out / "power_law.json").read_text()):
        print(f"power law {fit['budget_mode']:12s} {fit['method']:10s} alpha={fit['alpha_setting']:4s} "
              f"exponent={fit['exponent']} r2={fit['r2']} faster_than_power_law={fit.get('faster_than_power_law')}")
    for claim in json.loads((out / "claims.json").read_text()):
        print(f"claim [{claim['budget_mode']}] {claim['claim']}: holds={claim['holds']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/fmnist_verify")
    parser.add_argument("--src", default=DEFAULT_SRC, help="folder with the Fashion-MNIST idx .gz files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--epochs", type=int, default=20, help="fixed-epochs budget: passes over each subset")
    parser.add_argument("--teacher-epochs", type=int, default=30, help="teacher passes over all training data")
    parser.add_argument("--steps-epochs", type=int, default=5, help="fixed-steps budget, in full-data passes")
    parser.add_argument("--width", type=int, default=128, help="student MLP width (the teacher is 4x as wide)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--no-main", action="store_true", help="skip the main grid")
    parser.add_argument("--no-alpha-sweep", action="store_true", help="skip the KD-weight sweep")
    parser.add_argument("--no-balanced", action="store_true", help="skip the class-balanced pass")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start, out = time.time(), Path(args.out)
    dirs = write_fashion_mnist(out / "shards", args.src)
    emb = embed_splits(dirs, out)
    print(f"shards + PCA embeddings: {time.time() - start:.0f}s", flush=True)
    cfg = Config(embeddings=str(emb["train"]), clusters=args.clusters, device="cpu", seed=0)
    run = out / "run"
    api.embed(str(dirs["train"]), run, cfg, progress=False)
    steps = args.steps_epochs * -(-60000 // args.batch_size)
    common = dict(fractions=args.fractions, seeds=args.seeds, student="mlp", test_src=str(emb["test"]),
                  epochs=args.epochs, steps=steps, batch_size=args.batch_size, width=args.width,
                  teacher_width=4 * args.width, teacher_epochs=args.teacher_epochs, threads=args.threads,
                  progress=True)
    if not args.no_main:
        summary = run_verify(run, cfg, kd_alphas=(0.0, "auto"), budget_modes=("fixed_epochs", "fixed_steps"), **common)
        print_tables(summary, run / "verify")
    if not args.no_alpha_sweep:
        sweep = run_verify(run, cfg, methods=("random",), kd_alphas=(0.0, 0.25, 0.5, 0.75, 1.0),
                           budget_modes=("fixed_epochs", "fixed_steps"), out=run / "verify_alpha_sweep", **common)
        print_tables(sweep, run / "verify_alpha_sweep")
        print(json.dumps(json.loads((run / "verify_alpha_sweep/comparisons.json").read_text())["best_fixed_alpha"], indent=1))
    if not args.no_balanced:
        balanced = run_verify(run, cfg, methods=("random", "proto_hard", "proto_easy", "el2n", "dbp"),
                              kd_alphas=(0.0,), budget_modes=("fixed_epochs",), balance="class",
                              out=run / "verify_class_balanced", **common)
        print_tables(balanced, run / "verify_class_balanced")
    print(f"\ntotal wall time: {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
