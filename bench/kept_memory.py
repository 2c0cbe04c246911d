"""The model on the CPU with its freed activations kept in the process (embed/heap.py) against glibc as it is,
rounds alternating in one process.

    python bench/kept_memory.py [--model ViT-S-32] [--batch-size 64] [--steps 12] [--rounds 4] [--json PATH]

Prints, each round, img/s and minor page faults per batch of encode_image on one random batch, both ways.
After the first round glibc's thresholds are those embed leaves behind (mmap above 32 MiB, trim at 64 MiB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time

import torch

from publish import add_json_option, table, write

from datapruner.embed.heap import freed_memory_kept
from datapruner.embed.model import autocast, load_clip


def rate(clip, batch: torch.Tensor, steps: int, kept: bool) -> tuple[float, float]:
    """(img/s, minor page faults per batch) after one warm-up batch."""
    with torch.inference_mode(), autocast(clip), freed_memory_kept() if kept else contextlib.nullcontext():
        clip.model.encode_image(batch)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        for _ in range(steps):
            clip.model.encode_image(batch)
        seconds = time.perf_counter() - t
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return steps * len(batch) / seconds, faults / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-S-32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=4)
    add_json_option(ap, "kept_memory")
    args = ap.parse_args()
    clip = load_clip(args.model, "none", "cpu")
    batch = torch.randn(args.batch_size, 3, clip.image_size, clip.image_size)
    rows = []
    for _ in range(args.rounds):
        (plain, plain_faults), (kept, kept_faults) = (rate(clip, batch, args.steps, k) for k in (False, True))
        rows.append({"glibc_img_per_s": round(plain, 1), "glibc_faults_per_batch": round(plain_faults),
                     "kept_img_per_s": round(kept, 1), "kept_faults_per_batch": round(kept_faults),
                     "kept_over_glibc": round(kept / plain, 3)})
    result = {"model": args.model, "batch_size": args.batch_size, "steps": args.steps, "precision": clip.precision,
              "rounds": rows}
    print(json.dumps(result, indent=2))
    write(args.json_path, "kept_memory", title="The model on the CPU with its freed activations kept in the process, against glibc as it is", result=result,
          headline=headline(result), tables=tables(result))


def headline(r: dict) -> str:
    ratios = [x["kept_over_glibc"] for x in r["rounds"]]
    return f"{r['model']}, {r['precision']}, batch {r['batch_size']}: kept / glibc {min(ratios)}–{max(ratios)}× by round"


def tables(r: dict) -> list[dict]:
    return [table(f"encode_image, {r['steps']} batches of {r['batch_size']} a round",
                  ["round", "glibc img/s", "glibc faults/batch", "kept img/s", "kept faults/batch", "kept / glibc"],
                  [[i + 1, x["glibc_img_per_s"], f"{x['glibc_faults_per_batch']:,}", x["kept_img_per_s"],
                    f"{x['kept_faults_per_batch']:,}", f"{x['kept_over_glibc']}×"] for i, x in enumerate(r["rounds"])])]


if __name__ == "__main__":
    main()
