"""The embed map step: shards in, one embeddings/metadata/errors part per shard out."""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np
from tqdm import tqdm

from datapruner.config import Config
from datapruner.embed.model import ClipModel, autocast, load_clip
from datapruner.embed.outputs import write_embed_part
from datapruner.embed.stream import Decoder, ShardStream, ShardTask
from datapruner.io.rundir import RunDir, part_id

log = logging.getLogger(__name__)
STEP = "embed"


def pending_tasks(run: RunDir, shards: list[str], parts: list[int] | None = None) -> list[ShardTask]:
    """Shards not yet embedded (only those whose index is in `parts`, when given)."""
    wanted = range(len(shards)) if parts is None else sorted(set(parts))
    return [ShardTask(i, shards[i]) for i in wanted if not run.is_done(STEP, part_id(i, len(shards)))]


def embed_tasks(run: RunDir, tasks: list[ShardTask], n_shards: int, cfg: Config, clip: ClipModel | None = None,
                progress: bool = True) -> dict:
    """Embed the given shards; each finished shard is written and marked before the next counts."""
    import torch

    if not tasks:
        return {"samples": 0, "errors": 0, "shards": 0}
    clip = clip or load_clip(cfg.model, cfg.pretrained, cfg.device, cfg.precision, cfg.seed)
    decoder = Decoder(clip.preprocess, clip.image_size, cfg.caption_field, cfg.label_field)
    stream = ShardStream(tasks, decoder, cfg.batch_size)
    workers = min(cfg.num_workers, len(tasks))
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                         prefetch_factor=2 if workers else None)
    pending: dict[int, dict] = {}
    totals = {"samples": 0, "errors": 0, "shards": 0}
    with threads_beside_workers(clip.device, workers), \
            tqdm(total=None, unit="sample", desc="embed", disable=not progress) as bar:
        for batch in loader:
            buf = pending.setdefault(batch["index"], {"img": [], "txt": [], "rows": [], "errors": []})
            _embed_into(buf, batch, clip)
            bar.update(len(batch["rows"]))
            if batch["last"]:
                _finish_shard(run, batch, pending.pop(batch["index"]), n_shards, clip.dim, totals)
    return totals


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


def _embed_into(buf: dict, batch: dict, clip: ClipModel) -> None:
    import torch

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


def _finish_shard(run: RunDir, batch: dict, buf: dict, n_shards: int, dim: int, totals: dict) -> None:
    part = part_id(batch["index"], n_shards)
    img = np.concatenate(buf["img"]) if buf["img"] else np.zeros((0, dim), np.float16)
    txt = _text_matrix(buf, dim)
    write_embed_part(run, part, batch["shard"], img, txt, buf["rows"], buf["errors"])
    run.mark_done(STEP, part)
    totals["samples"] += len(buf["rows"])
    totals["errors"] += len(buf["errors"])
    totals["shards"] += 1


def _text_matrix(buf: dict, dim: int) -> np.ndarray | None:
    """Text embeddings when any batch of the shard had captions; batches without get zero rows."""
    if all(t is None for t in buf["txt"]):
        return None
    blocks = [t if t is not None else np.zeros((len(i), dim), np.float32) for t, i in zip(buf["txt"], buf["img"])]
    return np.concatenate(blocks)
