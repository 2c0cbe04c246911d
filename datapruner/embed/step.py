"""The embed map step: shards in, one embeddings/metadata/errors part per shard out.

Decode workers are a torch DataLoader over whole shards (embed/stream.py); each shard's part is
written as soon as its last batch is embedded and yielded to the loop, which marks it.
With precomputed embeddings (`--embeddings DIR`) the index, scan and join steps have matched its rows
to the shards' samples (embed/join.py) and this step writes the run's own parts from them
(embed/precomputed.py), so every later step reads RUN/embeddings alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import numpy as np

from datapruner import progress
from datapruner.embed.outputs import write_embed_part
from datapruner.io.rundir import RunDir

log = logging.getLogger(__name__)


def parts(ctx) -> list[str]:
    return ctx.run.part_ids()


def outputs(run: RunDir, part: str) -> list:
    own = run.own_embeddings
    return [run.img_emb(part, own), run.text_emb(part, own), run.metadata(part, own), run.errors(part)]


def batch(cfg) -> int:
    """Shards per call on a distributed runner (enough to keep an actor's decode workers busy)."""
    return cfg.ray_shards_per_call or max(1, cfg.num_workers)


def setup(ctx):
    """The model, loaded once per process or Ray actor."""
    from datapruner.embed.model import load_clip

    cfg = ctx.cfg
    if cfg.embeddings:
        return None
    return load_clip(cfg.model, cfg.pretrained, cfg.device, cfg.precision, cfg.seed)


def run(ctx, part_ids: list[str], clip) -> Iterator[tuple[str, dict]]:
    if ctx.cfg.embeddings:
        from datapruner.embed.precomputed import build_parts

        yield from build_parts(ctx, part_ids)
        return
    yield from embed_parts(ctx, part_ids, clip)


def embed_parts(ctx, part_ids: list[str], clip) -> Iterator[tuple[str, dict]]:
    import torch

    from datapruner.embed.stream import Decoder, ShardStream, ShardTask

    run_dir, cfg = ctx.run, ctx.cfg
    ids = run_dir.part_ids()
    tasks = [ShardTask(int(p), run_dir.shard_of(p)) for p in part_ids]
    decoder = Decoder(clip.preprocess, clip.image_size, cfg.caption_field, cfg.label_field,
                      cfg.max_image_pixels, cfg.allow_unsafe_names)
    workers = min(cfg.num_workers, len(tasks))
    loader = torch.utils.data.DataLoader(ShardStream(tasks, decoder, cfg.batch_size), batch_size=None,
                                         num_workers=workers, prefetch_factor=2 if workers else None)
    pending: dict[int, dict] = {}
    estimate = progress.ShardEstimate({t.index: progress.local_size(t.url) for t in tasks})
    with threads_beside_workers(clip.device, workers), \
            progress.bar("embed", unit="sample", enabled=ctx.progress) as bar:
        for b in loader:
            buf = pending.setdefault(b["index"], {"img": [], "txt": [], "rows": [], "errors": []})
            _embed_into(buf, b, clip)
            ends = [r["offset"] + r["length"] for r in b["rows"] if r.get("offset") is not None]
            bar.set_total(estimate.read(b["index"], len(b["rows"]), max(ends, default=None), b["last"]))
            bar.update(len(b["rows"]))
            if b["last"]:
                part = ids[b["index"]]
                yield part, _finish_shard(run_dir, part, b["shard"], pending.pop(b["index"]), clip.dim)


@contextlib.contextmanager
def threads_beside_workers(device: str, workers: int):
    """On the CPU, leave the decode workers their cores: torch's spinning threads would starve them."""
    import torch

    if device != "cpu" or workers == 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _embed_into(buf: dict, batch: dict, clip) -> None:
    import torch

    from datapruner.embed.model import autocast

    buf["errors"].extend(batch["errors"])
    if batch["images"] is None:
        return
    captions = [r["caption"] for r in batch["rows"]]
    with torch.inference_mode(), autocast(clip):
        img = clip.model.encode_image(batch["images"].to(clip.device))
        buf["img"].append(_normalised(img))
        if any(c is not None for c in captions):
            tokens = clip.tokenizer([c or "" for c in captions]).to(clip.device)
            buf["txt"].append(_normalised(clip.model.encode_text(tokens)))
        else:
            buf["txt"].append(None)
    buf["rows"].extend(batch["rows"])


def _normalised(x) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _finish_shard(run: RunDir, part: str, shard: str, buf: dict, dim: int) -> dict:
    img = np.concatenate(buf["img"]) if buf["img"] else np.zeros((0, dim), np.float16)
    write_embed_part(run, part, shard, img, _text_matrix(buf, dim), buf["rows"], buf["errors"])
    return {"samples": len(buf["rows"]), "errors": len(buf["errors"]), "shards": 1}


def _text_matrix(buf: dict, dim: int) -> np.ndarray | None:
    """Text embeddings when any batch of the shard had captions; batches without get zero rows."""
    if all(t is None for t in buf["txt"]):
        return None
    blocks = [t if t is not None else np.zeros((len(i), dim), np.float32) for t, i in zip(buf["txt"], buf["img"])]
    return np.concatenate(blocks)
