"""`datapruner embed` against the model alone and against today's behaviour, all in one process.

    python bench/embed_throughput.py [--src SHARDS] [--model ViT-S-32] [--workers 2] [--samples 1000] [--json PATH]

Without --src it writes shards of synthetic 256×256 JPEGs (decode costs like web images), once with a
caption per sample and once images only. On the CPU it prints samples/s of
  - the model alone: preprocessed images already in memory, at the precision embed uses, every usable core,
    its freed activations kept in the process as embed keeps them (measured just before and just after
    images only, which each round is also given against);
  - `embed` on the captioned shards as before issue #17 (text tower whenever captions exist, fp32);
  - `embed` on the same shards with a policy that reads no text (images only, bf16 where the CPU has it);
  - `embed` on the image-only shards,
and the ratios (targets: ≥ 1.8× before/after on captions; ≥ 0.9 of the model alone on images only; also against
the model's rate inside the images-only run, the share of its wall time spent in the model), beside
the decode cost per image on one core, the sha256 embed takes of the shard's bytes per image (the source
identity, io/identity.py) and the share of the model alone that images only can reach at all
when decoding and the model take turns on the same cores (model core-seconds over model plus decode
core-seconds).
On CUDA it prints img/s of the model alone and of `embed` (JPEGs decoded on the GPU), the FLOPs per image
(counted by torch's FlopCounterMode on one forward) and the MFU against the GPU's dense bf16 peak and
against a bf16 GEMM measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time

import numpy as np
import torch

from publish import add_json_option, table, write

from datapruner import api
from datapruner.config import Config
from datapruner.embed.decode import decode_image, image_bytes
from datapruner.embed.device_decode import ModelInputs, worker_preprocess
from datapruner.embed.heap import freed_memory_kept
from datapruner.embed.model import autocast, load_clip
from datapruner.embed.embedding import usable_cores
from datapruner.io.shards import list_shards, open_shard
from datapruner.io.tar_samples import iter_samples

# dense bf16 tensor-core peaks (datasheets, TFLOP/s), matched by substring of torch's device name
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0}


def write_jpeg_shards(root: str, n_samples: int, per_shard: int = 250, captions: bool = True) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    for s in range(0, n_samples, per_shard):
        with tarfile.open(f"{root}/{s // per_shard:05d}.tar", "w") as tar:
            for j in range(s, min(s + per_shard, n_samples)):
                buf = io.BytesIO()
                Image.fromarray(np.roll(base, j % 256, axis=0)).save(buf, format="JPEG", quality=90)
                members = [("jpg", buf.getvalue())] + [("txt", f"a photo of thing number {j}".encode())] * captions
                for ext, data in members:
                    info = tarfile.TarInfo(f"{j:09d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return root


def first_input(shards: list[str], clip) -> torch.Tensor:
    with open_shard(shards[0]) as stream:
        sample = next(iter(iter_samples(stream)))
    return clip.preprocess(decode_image(image_bytes(sample.members), clip.image_size))


def decode_seconds(shards: list[str], clip, n: int = 200) -> float:
    """CPU seconds per image of what decoding does to one on this thread: decode, resize and crop (a decode
    worker), then its share of normalising the batch (the model's loop)."""
    samples = []
    with open_shard(shards[0]) as stream:
        for sample in iter_samples(stream):
            samples.append(image_bytes(sample.members))
            if len(samples) == n:
                break
    prep = worker_preprocess(clip.preprocess)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = time.process_time()
        crops = torch.stack([prep(decode_image(data, clip.image_size)) for data in samples])
        worker = time.process_time() - t
        normalise = ModelInputs(prep)
        normalise(crops, "cpu")  # embed reuses its buffer: its page faults are not paid per batch
        t = time.process_time()
        normalise(crops, "cpu")
        return (worker + time.process_time() - t) / len(samples)
    finally:
        torch.set_num_threads(threads)


def digest_seconds(shards: list[str], rounds: int = 5) -> float:
    """CPU seconds per sample on this thread of what recording a shard's identity adds to embed: sha256 over
    the bytes it reads anyway (io/identity.py), best of `rounds` over the first shard."""
    from datapruner.io.identity import digest_of

    with open_shard(shards[0]) as stream:
        n = sum(1 for _ in iter_samples(stream))
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        digest_of(shards[0])
        best = min(best, time.process_time() - t)
    return best / max(1, n)


def model_only(clip, image: torch.Tensor, batch_size: int, n: int) -> float:
    """img/s of encode_image on a batch already on the device, at clip's precision (after a warm-up), its
    freed activations kept in the process as embed keeps them (embed/heap.py)."""
    batch = torch.stack([image] * batch_size).to(clip.device)
    if clip.device == "cpu":
        torch.set_num_threads(usable_cores())
    steps = max(1, int(np.ceil(n / batch_size)))
    with torch.inference_mode(), autocast(clip), freed_memory_kept():
        clip.model.encode_image(batch)
        _sync(clip)
        t = time.perf_counter()
        for _ in range(steps):
            clip.model.encode_image(batch)
        _sync(clip)
    return steps * batch_size / (time.perf_counter() - t)


def _sync(clip) -> None:
    if clip.device != "cpu":
        torch.cuda.synchronize()


def embed_rate(src: str, cfg: Config) -> tuple[float, float]:
    """samples/s of `datapruner embed` (model loading and writing the parts included), and the share of
    its wall time its model spent embedding batches (the batches' normalisation left out)."""
    from datapruner.embed import device_decode
    from datapruner.embed import embedding as step

    timings = {"embed": 0.0, "normalise": 0.0}
    originals = {"embed": step._embed_into, "normalise": device_decode.ModelInputs.__call__}

    def timed(name):
        def call(*a, **kw):
            t = time.perf_counter()
            out = originals[name](*a, **kw)
            timings[name] += time.perf_counter() - t
            return out
        return call

    step._embed_into, device_decode.ModelInputs.__call__ = timed("embed"), timed("normalise")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            summary = api.embed(src, f"{tmp}/run", cfg, progress=False)
            run_s = time.perf_counter() - t
    finally:
        step._embed_into, device_decode.ModelInputs.__call__ = originals["embed"], originals["normalise"]
    return summary["counts"]["valid"] / run_s, (timings["embed"] - timings["normalise"]) / run_s


def flops_per_image(clip, image: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        clip.model.encode_image(image[None].to(clip.device))
    return float(counter.get_total_flops())


def gemm_tflops(device: str, n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def cpu_report(args, clip, captioned: str, images_only: str) -> dict:
    """Each rate the best of args.repeats rounds, the runs measured in turn in every round (a noisy
    machine slows them alike); the model alone just before and just after images only, whose rate each
    round is also given against the mean of those two."""
    image = first_input(list_shards(captioned), clip)
    base = Config(model=args.model, pretrained=args.pretrained, batch_size=args.batch_size, num_workers=args.workers,
                  device="cpu")

    def alone() -> tuple[float, float]:
        return model_only(clip, image, args.batch_size, args.samples), 1.0

    runs = {"captions_text_tower_fp32_as_before": lambda: embed_rate(captioned, base.replace(embed_text=True,
                                                                                            precision="fp32")),
            "captions_policy_without_text": lambda: embed_rate(captioned, base),
            "model_only": alone,
            "images_only": lambda: embed_rate(images_only, base),
            "model_only_after": alone}
    best = dict.fromkeys(runs, 0.0)
    busy = dict.fromkeys(runs, 0.0)  # the best share of a run's wall time its model spent embedding
    by_round = []
    for _ in range(args.repeats):
        rates = {}
        for name, measure in runs.items():
            rates[name], share = measure()
            best[name], busy[name] = max(best[name], rates[name]), max(busy[name], share)
        by_round.append(rates["images_only"] / ((rates["model_only"] + rates["model_only_after"]) / 2))
    best["model_only"] = max(best.pop("model_only"), best.pop("model_only_after"))
    # the model alone keeps every core busy: each image's decode takes CPU time from it, so images only can
    # reach at most (model's core-seconds) / (model's + decode's) of the model alone
    decode = decode_seconds(list_shards(images_only), clip)
    digest = digest_seconds(list_shards(images_only))
    attainable = 1.0 / (1.0 + decode * best["model_only"] / usable_cores())
    return {
        "device": "cpu", "usable_cores": usable_cores(), "precision": clip.precision,
        "decode_ms_per_image_one_core": round(1000 * decode, 2),
        "digest_ms_per_image_one_core": round(1000 * digest, 4),
        "digest_over_decode": round(digest / decode, 4),
        "images_only_attainable_fraction": round(attainable, 3),
        "images_only_fraction_of_attainable": round(best["images_only"] / best["model_only"] / attainable, 3),
        "samples_per_s": {k: round(v, 1) for k, v in best.items()},
        "captions_after_over_before": round(best["captions_policy_without_text"]
                                            / best["captions_text_tower_fp32_as_before"], 2),
        "images_only_fraction_of_model_only": round(best["images_only"] / best["model_only"], 3),
        "images_only_over_model_only_around_it_by_round": [round(r, 3) for r in by_round],
        # the same ratio against the model's rate inside that run, on its own batches at the same moments:
        # immune to the machine's speed drifting between runs, blind to decode slowing the model down
        "images_only_fraction_of_model_in_run": round(busy["images_only"], 3),
        "note": "embed rates include model loading and writing the parts; the model alone runs at embed's precision",
    }


def cuda_report(args, clip, captioned: str, images_only: str) -> dict:
    shards = list_shards(captioned)
    image = first_input(shards, clip)
    flops = flops_per_image(clip, image)
    rate_model = model_only(clip, image, args.batch_size, args.samples)
    cfg = Config(model=args.model, pretrained=args.pretrained, batch_size=args.batch_size, num_workers=args.workers,
                 device=clip.device)
    rate_embed = max(embed_rate(images_only, cfg)[0] for _ in range(args.repeats))
    name = torch.cuda.get_device_name()
    peak, gemm = peak_tflops(name), gemm_tflops(clip.device)
    out = {"device": name, "decode_workers_asked": args.workers, "precision": clip.precision,
           "gflops_per_image": round(flops / 1e9, 3),
           "img_per_s": {"model_only": round(rate_model, 1), "embed_gpu_jpeg_decode": round(rate_embed, 1)},
           "embed_fraction_of_model_only": round(rate_embed / rate_model, 3),
           "bf16_gemm_tflops_measured": round(gemm, 1)}
    for label, rate in (("model_only", rate_model), ("embed", rate_embed)):
        out[f"mfu_{label}_vs_measured_gemm"] = round(rate * flops / (gemm * 1e12), 4)
        if peak:
            out[f"mfu_{label}_vs_datasheet_{peak:g}_tflops"] = round(rate * flops / (peak * 1e12), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=None, help="captioned shards (default: synthetic)")
    ap.add_argument("--src-images-only", default=None)
    ap.add_argument("--model", default="ViT-S-32")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="decode worker processes beside a GPU model (on the CPU "
                    "decode runs in a thread pool taking turns with the model)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    add_json_option(ap, "embed_throughput")
    args = ap.parse_args()
    tmp_a, tmp_b = tempfile.TemporaryDirectory(), tempfile.TemporaryDirectory()
    captioned = args.src or write_jpeg_shards(tmp_a.name, args.samples)
    images_only = args.src_images_only or (args.src or write_jpeg_shards(tmp_b.name, args.samples, captions=False))
    clip = load_clip(args.model, args.pretrained, args.device)
    report = (cpu_report if clip.device == "cpu" else cuda_report)(args, clip, captioned, images_only)
    result = {"model": args.model, "samples": args.samples, "batch_size": args.batch_size, "repeats": args.repeats,
              **report}
    print(json.dumps(result, indent=2))
    write(args.json_path, "embed_throughput", title=__doc__.splitlines()[0], result=result,
          headline=headline(result), tables=tables(result))


def headline(r: dict) -> str:
    if r["device"] != "cpu":
        return (f"{r['model']} on {r['device']}: embed {r['img_per_s']['embed_gpu_jpeg_decode']} img/s, "
                f"{r['embed_fraction_of_model_only']} of the model alone")
    return (f"{r['model']}, {r['precision']}: images only at {r['images_only_fraction_of_model_only']} of the model "
            f"alone ({r['samples_per_s']['images_only']} vs {r['samples_per_s']['model_only']} img/s); captions "
            f"without the text tower {r['captions_after_over_before']}× faster")


def tables(r: dict) -> list[dict]:
    if r["device"] != "cpu":
        mfu = [k for k in r if k.startswith("mfu_")]
        return [table("img/s on the GPU", ["model", "precision", "GFLOP/img", "model alone", "embed (GPU JPEG decode)",
                                           "embed / model alone", "bf16 GEMM TFLOP/s", *mfu],
                      [[r["model"], r["precision"], r["gflops_per_image"], r["img_per_s"]["model_only"],
                        r["img_per_s"]["embed_gpu_jpeg_decode"], r["embed_fraction_of_model_only"],
                        r["bf16_gemm_tflops_measured"], *(r[k] for k in mfu)]])]
    rate = r["samples_per_s"]
    return [table(f"Samples/s, best of {r['repeats']} round(s) of {r['samples']:,} samples",
                  ["model, precision", "model alone", "captions, text tower, fp32", "captions, no text tower",
                   "images only", "no text tower / text tower", "images only / model alone",
                   "/ model in the run", "by round", "decode ms/img (one core)", "sha256 ms/img (one core)",
                   "attainable"],
                  [[f"{r['model']}, {r['precision']}", rate["model_only"], rate["captions_text_tower_fp32_as_before"],
                    rate["captions_policy_without_text"], rate["images_only"], f"{r['captions_after_over_before']}×",
                    f"**{r['images_only_fraction_of_model_only']}**", r["images_only_fraction_of_model_in_run"],
                    ", ".join(map(str, r["images_only_over_model_only_around_it_by_round"])),
                    r["decode_ms_per_image_one_core"], r.get("digest_ms_per_image_one_core", "—"),
                    r["images_only_attainable_fraction"]]])]


if __name__ == "__main__":
    main()
