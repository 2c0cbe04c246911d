"""The verify study on Fashion-MNIST, one command: every claim tested with 5 seeds, both budgets, every row published.

    python bench/fashion_mnist_study.py [--out runs/fmnist_study] [--doc docs/verify-study.md]

1. writes Fashion-MNIST as WebDataset shards (bench/fashion_mnist_shards.py: 6 train shards, 1 test shard);
2. embeds them twice into the embedding-reader layout: a self-supervised encoder trained on the training
   images only (datapruner/verify/ssl.py; the space Sorscher et al. prune in) and, as a comparison row, a
   64-d pixel PCA. CLIP on 70k images does not fit a 2-core budget, and random-init CLIP features carry no signal;
   The embeddings are evaluated first (embedding_eval.json): kNN and linear-probe test accuracy of the SSL
   encoder, the same encoder at random init and the pixel PCA (bench/ssl_embedding.py's measures);
3. `api.verify` studies, each with 5 seeds, the convergence budget (early stopping on a validation split
   carved from the training data, capped at --max-epochs passes) and the compute-matched fixed-steps budget:
   - ssl: every method (random, proto hard/easy, el2n, el2n_offset, el2n_probe, dbp) at 0.1, 0.3, 0.7 and 1.0, without KD and
     with KD at alpha 0.25, 0.5 and 0.9 (and "val": the alpha the validation split prefers), on the whole pool,
     a KD teacher per seed (resample teacher);
   - ssl_pools: random and proto hard/easy on pools of 25 %, 50 % and 100 % of the training data (the
     abundance axis of Sorscher et al.), no KD;
   - pca: random, proto hard/easy and dbp on the pixel-PCA embedding, no KD;
   - cnn (only with --only cnn or --cnn): a CNN student on the pixels, which never reads the embedding the
     scores were computed in (SSL scores, random / proto hard / proto easy / dbp at 0.1, 0.3, 1.0, fixed steps);
4. `bench/study_readme.py` writes docs/verify-study.md (tables and verdicts) from the results.json files.
Test accuracy is on the 10k Fashion-MNIST test split, which nothing but the final evaluation sees.
"""

from __future__ import annotations

import argparse
import io
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

DIM = 64
ALL_METHODS = ("random", "proto_hard", "proto_easy", "el2n", "el2n_offset", "el2n_probe", "dbp")


def shard_pixels(shard: str) -> tuple[np.ndarray, list[str], list[int]]:
    """(n, 28, 28) uint8 pixels, keys and labels of one shard, in tar order."""
    from PIL import Image

    pixels, keys, labels = [], [], []
    with open_shard(shard) as stream:
        for sample in iter_samples(stream):
            pixels.append(np.asarray(Image.open(io.BytesIO(sample.members["png"])).convert("L"), np.uint8))
            keys.append(sample.key)
            labels.append(int(sample.members["cls"]))
    return np.stack(pixels), keys, labels


def fit_pca(pixels: np.ndarray, dim: int, seed: int = 0):
    """A projection fitted on up to 20k training images: pixels (n, 28, 28) uint8 → (n, dim) float32."""
    rng = np.random.default_rng(seed)
    flat = lambda p: p.reshape(len(p), -1).astype(np.float32) / 255.0  # noqa: E731
    sample = flat(pixels[rng.choice(len(pixels), size=min(20000, len(pixels)), replace=False)])
    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    return lambda p: (flat(p) - mean) @ vt[:dim].T


def fit_ssl(pixels: np.ndarray, dim: int, seed: int = 0, seconds: float | None = None):
    from datapruner.verify import ssl

    encoder = ssl.train_encoder(pixels, dim=dim, seed=seed, seconds=seconds)
    return lambda p: ssl.embed(encoder, p)


def write_embeddings(out: Path, parts: list, project) -> None:
    """Part i (= shard i in sorted order): img_emb_{i}.npy (unit rows, float16) and metadata_{i}.parquet."""
    width = len(str(len(parts)))
    for i, (pixels, keys, labels) in enumerate(parts):
        z = np.asarray(project(pixels), np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
        save_npy(out / f"img_emb/img_emb_{i:0{width}d}.npy", z.astype(np.float16))
        save_parquet(out / f"metadata/metadata_{i:0{width}d}.parquet",
                     pa.table({"key": keys, "label": pa.array(labels, pa.int64())}))


def embed_splits(dirs: dict, out: Path, name: str, fit) -> tuple[dict[str, Path], float]:
    """Embeddings of the train and test shards, fitted on train only; reused when present."""
    emb = {split: out / "embeddings" / name / split for split in dirs}
    if all((e / "metadata").is_dir() for e in emb.values()):
        return emb, 0.0
    start = time.time()
    parts = {split: [shard_pixels(s) for s in list_shards(str(d))] for split, d in dirs.items()}
    project = fit(np.concatenate([p[0] for p in parts["train"]]), DIM)
    for split in dirs:
        write_embeddings(emb[split], parts[split], project)
    return emb, time.time() - start


def evaluate_embeddings(dirs: dict, embeddings: dict, path: Path) -> float:
    """kNN and linear-probe test accuracy of each study embedding and of the SSL encoder at random init."""
    from ssl_embedding import knn_accuracy, probe_accuracy

    start = time.time()
    parts = {split: [shard_pixels(s) for s in list_shards(str(d))] for split, d in dirs.items()}
    pixels = {split: np.concatenate([p[0] for p in parts[split]]) for split in parts}
    labels = {split: np.concatenate([p[2] for p in parts[split]]) for split in parts}
    spaces = {name: {split: read_embedding(emb[split]) for split in emb} for name, emb in embeddings.items()}
    spaces["ssl at random init"] = random_init_embedding(pixels)
    rows = [{"embedding": name, "knn_accuracy": round(knn_accuracy(z["train"], labels["train"], z["test"], labels["test"]), 4),
             "probe_accuracy": round(probe_accuracy(z["train"], labels["train"], z["test"], labels["test"]), 4)}
            for name, z in spaces.items()]
    path.write_text(json.dumps({"train": int(len(labels["train"])), "test": int(len(labels["test"])), "rows": rows}, indent=1))
    return time.time() - start


def read_embedding(root: Path) -> np.ndarray:
    return np.concatenate([np.load(p).astype(np.float32) for p in sorted((root / "img_emb").glob("*.npy"))])


def random_init_embedding(pixels: dict) -> dict:
    from datapruner.verify import ssl

    encoder = ssl.train_encoder(pixels["train"], dim=DIM, seed=0, epochs=0)
    return {split: ssl.embed(encoder, p) for split, p in pixels.items()}


def studies(args) -> dict[str, tuple[str, dict]]:
    """name → (embedding, VerifySpec options)."""
    common = dict(fractions=tuple(args.fractions), seeds=tuple(range(args.seeds)), student="mlp",
                  budget_modes=("convergence", "fixed_steps"), epochs=args.epochs, batch_size=512, width=128,
                  teacher_width=512, threads=2, max_epochs=args.max_epochs, patience=3)
    return {
        "ssl": ("ssl", dict(common, methods=ALL_METHODS, kd_alphas=tuple(args.kd_alphas), resample=tuple(args.resample),
                            budget_modes=tuple(args.kd_budgets))),
        "ssl_pools": ("ssl", dict(common, methods=("random", "proto_hard", "proto_easy"), kd_alphas=(0.0,),
                                  pools=(0.25, 0.5, 1.0))),
        "pca": ("pca", dict(common, methods=("random", "proto_hard", "proto_easy", "dbp"), kd_alphas=(0.0,),
                            budget_modes=tuple(args.kd_budgets))),
        "cnn": ("ssl", dict(common, methods=("random", "proto_hard", "proto_easy", "dbp"), kd_alphas=(0.0,),
                            budget_modes=("fixed_steps",), student="cnn", width=128,
                            image_size=28, channels=1)),
    }
OPTIONAL = ("cnn",)  # run only when asked for (--cnn or --only)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/fmnist_study")
    parser.add_argument("--src", default=DEFAULT_SRC, help="folder with the Fashion-MNIST idx .gz files")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5, help="fixed-steps budget, in passes over the pool")
    parser.add_argument("--max-epochs", type=int, default=150, help="convergence budget: the cap")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.7, 1.0])
    parser.add_argument("--kd-alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.9],
                        help="the ssl study's KD weights (>= 3, 0 included, for the KD-weight claim)")
    parser.add_argument("--kd-budgets", nargs="+", default=["convergence", "fixed_steps"],
                        help="budgets of the ssl and pca studies (ssl_pools always runs both)")
    parser.add_argument("--resample", nargs="*", default=["teacher"], help="what each seed of the ssl study redraws")
    parser.add_argument("--ssl-seconds", type=float, default=None, help="wall-clock cap on the SSL encoder's training")
    parser.add_argument("--only", nargs="+", help="run only these studies (ssl, ssl_pools, pca, cnn)")
    parser.add_argument("--cnn", action="store_true", help="also the CNN-on-pixels study")
    parser.add_argument("--doc", help="write the study's page here, e.g. docs/verify-study.md (bench/study_readme.py)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start, out = time.time(), Path(args.out)
    timings = {}
    dirs = write_fashion_mnist(out / "shards", args.src)
    chosen = {name: study for name, study in studies(args).items()
              if (name in args.only if args.only else name not in OPTIONAL or args.cnn)}
    embeddings = {}
    for name, fit in (("ssl", lambda p, d: fit_ssl(p, d, seconds=args.ssl_seconds)), ("pca", fit_pca)):
        if any(emb == name for emb, _ in chosen.values()):
            embeddings[name], timings[f"embed_{name}"] = embed_splits(dirs, out, name, fit)
    if not args.only:
        timings["embedding_eval"] = evaluate_embeddings(dirs, embeddings, out / "embedding_eval.json")
    for name, (emb, options) in chosen.items():
        cfg = Config(embeddings=str(embeddings[emb]["train"]), clusters=100, device="cpu", seed=0)
        run = out / f"run_{emb}"
        api.embed(str(dirs["train"]), run, cfg, progress=False)
        t = time.time()
        test_src = dirs["test"] if options["student"] == "cnn" else embeddings[emb]["test"]
        api.verify(run, VerifySpec(**options, test_src=str(test_src), out=out / "verify" / name), cfg)
        timings[name] = time.time() - t
    timings["total"] = time.time() - start
    (out / "command.txt").write_text("python bench/fashion_mnist_study.py " + " ".join(sys.argv[1:]) + "\n")
    if args.only and (out / "timings.json").exists():  # a partial rerun keeps the other studies' timings
        earlier = json.loads((out / "timings.json").read_text())
        timings = {**earlier, **timings, "total": earlier.get("total", 0.0) + timings["total"]}
    (out / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1))
    print(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1))
    if args.doc:
        from study_readme import write_doc

        write_doc(out, Path(args.doc))


if __name__ == "__main__":
    main()
