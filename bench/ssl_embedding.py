"""How good is the SSL embedding? kNN and linear-probe accuracy on Fashion-MNIST test images, one table.

    nice -n 19 .venv/bin/python bench/ssl_embedding.py [--src /usr/share/datasets/fashion-mnist] [--epochs 3]
        [--seconds S] [--threads 2] [--limit N] [--seed 0] [--json PATH]

Rows: the SimCLR encoder (datapruner/verify/ssl.py) trained on the training images, the same encoder at random
init, and a 64-d pixel PCA fit on the training pixels (bench/fashion_mnist_study.py `fit_pca`). Each is fit on
train embeddings and evaluated on the 10k test images: kNN (k = 20, cosine, majority vote) and a linear probe
(softmax regression on standardised features). Seconds are each method's fit + embedding time in this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fashion_mnist_shards import DEFAULT_SRC, load_split  # noqa: E402
from fashion_mnist_study import fit_pca  # noqa: E402
from publish import add_json_option, table, write  # noqa: E402

from datapruner.verify.ssl import SSLSpec, embed, train_encoder  # noqa: E402


def knn_accuracy(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, k: int = 20,
                 chunk: int = 1024) -> float:
    """Majority vote of the k nearest training rows by cosine similarity (rows are normalised here)."""
    a = F.normalize(torch.from_numpy(train).float(), dim=1)
    ya = torch.from_numpy(train_y.astype(np.int64))
    classes = int(ya.max()) + 1
    correct = 0
    for i in range(0, len(test), chunk):
        q = F.normalize(torch.from_numpy(test[i:i + chunk]).float(), dim=1)
        nearest = (q @ a.T).topk(k, dim=1).indices
        votes = F.one_hot(ya[nearest], classes).sum(1)
        correct += int((votes.argmax(1).numpy() == test_y[i:i + chunk]).sum())
    return correct / len(test)


def probe_accuracy(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray, seed: int = 0,
                   epochs: int = 30, batch_size: int = 512) -> float:
    """Softmax regression on standardised features: AdamW, cosine learning rate, `epochs` passes."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    a, b = torch.from_numpy(train).float(), torch.from_numpy(test).float()
    mu, sd = a.mean(0), a.std(0).clamp(min=1e-6)
    a, b = (a - mu) / sd, (b - mu) / sd
    ya = torch.from_numpy(train_y.astype(np.int64))
    model = torch.nn.Linear(a.shape[1], int(ya.max()) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    steps = epochs * ((len(a) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        order = torch.randperm(len(a), generator=g)
        for i in range(0, len(a), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(a[idx]), ya[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return float((model(b).argmax(1).numpy() == test_y).mean())


def pca_embeddings(train_x: np.ndarray, test_x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    project = fit_pca(train_x, dim)
    return project(train_x).astype(np.float32), project(test_x).astype(np.float32)


def ssl_embeddings(train_x, test_x, args, epochs: float):
    spec = SSLSpec(dim=args.dim, width=args.width, crop_side=args.crop_side, batch_size=args.batch_size, lr=args.lr,
                   temperature=args.temperature)
    enc = train_encoder(train_x, dim=args.dim, seed=args.seed, seconds=args.seconds, epochs=epochs,
                        threads=args.threads, spec=spec)
    return embed(enc, train_x), embed(enc, test_x), enc


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", default=DEFAULT_SRC)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=None, help="wall-clock cap on the SSL training")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="first N training images only (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=64)
    for field in ("width", "crop_side", "batch_size", "lr", "temperature"):
        default = getattr(SSLSpec, field)
        p.add_argument("--" + field.replace("_", "-"), type=type(default), default=default)
    add_json_option(p, "ssl_embedding")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_x, train_y = load_split(args.src, "train")
    test_x, test_y = load_split(args.src, "test")
    train_x, train_y = train_x[:args.limit], train_y[:args.limit]
    print(f"train {len(train_x)}, test {len(test_x)}, threads {torch.get_num_threads()}, "
          f"SSL {dataclasses.replace(SSLSpec(), dim=args.dim, width=args.width, crop_side=args.crop_side)}")

    rows = []
    for name, make in (("pixel PCA", lambda: pca_embeddings(train_x, test_x, args.dim)),
                       ("random-init CNN", lambda: ssl_embeddings(train_x, test_x, args, 0)[:2]),
                       ("SimCLR CNN", lambda: ssl_embeddings(train_x, test_x, args, args.epochs))):
        start = time.monotonic()
        a, b, *rest = make()
        seconds = time.monotonic() - start
        rows.append((name, knn_accuracy(a, train_y, b, test_y), probe_accuracy(a, train_y, b, test_y), seconds))
        if rest:
            print(f"SimCLR: {rest[0].steps} steps, {rest[0].seconds:.1f} s training")
    print(f"\n{'method':<18} {'kNN acc':>8} {'probe acc':>10} {'seconds':>8}")
    for name, knn, probe, seconds in rows:
        print(f"{name:<18} {knn:>8.4f} {probe:>10.4f} {seconds:>8.1f}")
    base = rows[0]
    print(f"\nSimCLR vs pixel PCA: kNN {rows[2][1] - base[1]:+.4f}, probe {rows[2][2] - base[2]:+.4f}; "
          f"vs random init: kNN {rows[2][1] - rows[1][1]:+.4f}, probe {rows[2][2] - rows[1][2]:+.4f}")
    result = {"train": len(train_x), "test": len(test_x), "threads": torch.get_num_threads(), "epochs": args.epochs,
              "rows": [{"method": n, "knn_accuracy": round(k, 4), "probe_accuracy": round(q, 4),
                        "seconds": round(t, 1)} for n, k, q, t in rows]}
    write(args.json_path, "ssl_embedding", title=__doc__.split("\n")[0], result=result,
          headline=f"SimCLR CNN: kNN {rows[2][1]:.4f}, probe {rows[2][2]:.4f} (pixel PCA: {base[1]:.4f}, {base[2]:.4f})",
          tables=[table(f"Fashion-MNIST test accuracy ({len(train_x):,} training images)",
                        ["embedding", "kNN acc", "probe acc", "seconds"],
                        [[x["method"], x["knn_accuracy"], x["probe_accuracy"], x["seconds"]] for x in result["rows"]])])


if __name__ == "__main__":
    main()
