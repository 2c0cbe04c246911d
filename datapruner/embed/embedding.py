"""Embedding shards: shards in, one embeddings/metadata/errors part per shard out (the embed step's room).

Shards are read whole and in sample order (embed/stream.py). With the model on the CPU, a thread pool
decodes each batch on every core and the model then embeds it on every core (threaded_batches), its freed
activations kept in the process from batch to batch (embed/heap.py). Beside a
GPU model, decode workers are a torch DataLoader over whole shards, as many as asked but never more than
the cores beside the model's loop, and they pass JPEGs on raw to be decoded on the GPU
(embed/device_decode.py); on Ray a GPU actor's batches come from CPU decode tasks instead
(runners/ray.decode_feed). The text tower runs only when the caller says so
(the wing decides it once, from the run's recorded embed inputs). Each shard's part is written as soon as its last batch is
embedded and yielded to the loop, which marks it.
With precomputed embeddings (`--embeddings DIR`) the index, scan and join steps match its rows to the
shards' samples (embed/join.py) and embed/precomputed.py writes the run's own parts from them, so every
later step reads RUN/embeddings alike.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from datapruner import progress
from datapruner.embed.fields import SampleFields
from datapruner.embed.outputs import write_embed_part
from datapruner.io.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedState:
    """The model and where its decoded batches come from: a runner's feed (the Ray runner's CPU decode
    tasks) instead of DataLoader workers in this process."""

    clip: object
    feed: Callable | None = None  # (tasks, decoder, batch_size) -> Iterator[batch]


def embed_parts(run_dir: RunDir, part_ids: list[str], state, fields: SampleFields, text: bool, batch_size: int,
                num_workers: int, show_progress: bool = True) -> Iterator[tuple[str, dict]]:
    """Embed the shards of `part_ids` with the model in `state` (a clip, or an EmbedState); yield each part
    once its embeddings, metadata and errors are written. `text`: run the text tower too."""
    from datapruner.embed.device_decode import ModelInputs, jpeg_preprocess_on, worker_preprocess
    from datapruner.embed.stream import Decoder, ShardTask

    clip, feed = (state.clip, state.feed) if isinstance(state, EmbedState) else (state, None)
    ids = run_dir.part_ids()
    tasks = [ShardTask(int(p), run_dir.shard_of(p)) for p in part_ids]
    on_device = jpeg_preprocess_on(clip)
    decoder = Decoder(worker_preprocess(clip.preprocess), clip.image_size, fields.caption_field, fields.label_field,
                      fields.max_image_pixels, fields.allow_unsafe_names, jpegs_raw=on_device is not None,
                      full_decode_pixels=fields.max_full_decode_pixels)
    if not text:
        log.info("embedding images only: no metric of this policy reads text embeddings (embed_text: true adds them)")
    batches = batch_source(tasks, decoder, batch_size, num_workers, clip, feed)
    inputs = ModelInputs(decoder.preprocess)
    pending: dict[int, dict] = {}
    estimate = progress.ShardEstimate({t.index: progress.local_size(t.url) for t in tasks})
    with progress.bar("embed", unit="sample", enabled=show_progress) as bar, _heap_kept_on_cpu(clip):
        for b in batches:
            buf = pending.setdefault(b["index"], {"img": [], "txt": [], "rows": [], "errors": []})
            _embed_into(buf, b, clip, decoder, on_device, inputs, text)
            ends = [r["offset"] + r["length"] for r in b["rows"] if r.get("offset") is not None]
            bar.set_total(estimate.read(b["index"], len(b["rows"]), max(ends, default=None), b["last"]))
            bar.update(len(b["rows"]))
            if b["last"]:
                part = ids[b["index"]]
                yield part, _finish_shard(run_dir, part, b["shard"], pending.pop(b["index"]), clip.dim, b["source"])


def _heap_kept_on_cpu(clip):
    """A model on the CPU reuses its freed activations' pages batch after batch (embed/heap.py)."""
    import contextlib

    from datapruner.embed.heap import freed_memory_kept

    return freed_memory_kept() if str(clip.device) == "cpu" else contextlib.nullcontext()


def batch_source(tasks, decoder, batch_size: int, num_workers: int, clip, feed: Callable | None = None) -> Iterator[dict]:
    """Where the decoded batches come from: the runner's feed; on the CPU, threads of this process that
    decode each batch on every core before the model embeds it on every core; beside a GPU model, decode
    worker processes that keep ahead of it."""
    if feed:
        return feed(tasks, decoder, batch_size)
    if str(clip.device) == "cpu":
        return threaded_batches(tasks, decoder, batch_size, decode_threads())
    return local_batches(tasks, decoder, batch_size, decode_workers(num_workers, len(tasks)))


def decode_threads() -> int:
    """The model's thread count: it follows the affinity mask, and OMP_NUM_THREADS, which Ray sets to an
    actor's CPUs."""
    import torch

    return torch.get_num_threads()


def threaded_batches(tasks, decoder, batch_size: int, threads: int) -> Iterator[dict]:
    """Decoded batches for a model on the CPU, shard after shard. Decoding and the model take turns on
    the same cores: PIL and torch release the GIL, so a pool of threads decodes a batch on every core,
    then the model has every core to itself. Run side by side they would contend for the cores (a worker
    beside the model slows both), and DataLoader workers add a copy of every batch between processes."""
    from concurrent.futures import ThreadPoolExecutor

    from datapruner.embed.stream import collated, shard_batches

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="decode") as pool:
        for task in tasks:
            for b in shard_batches(task, decoder, batch_size, pool.map):
                yield collated(b)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, cgroups' cpusets, Slurm)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def decode_workers(requested: int, n_shards: int, cores: int | None = None) -> int:
    """Decode worker processes beside a GPU model: as asked, but never more than the shards (a worker
    takes whole shards) nor than the cores beside the one the model's loop needs; with one core, decoding
    runs in this process."""
    cores = usable_cores() if cores is None else cores
    return max(0, min(requested, n_shards, cores - 1))


def local_batches(tasks, decoder, batch_size: int, workers: int) -> Iterator[dict]:
    """Decoded batches from DataLoader workers over whole shards (in this process when workers is 0), for
    a model on a GPU."""
    import torch

    from datapruner.embed.stream import ShardStream

    loader = torch.utils.data.DataLoader(ShardStream(tasks, decoder, batch_size), batch_size=None,
                                         num_workers=workers, prefetch_factor=2 if workers else None,
                                         worker_init_fn=_decode_worker_init if workers else None)
    yield from loader


def _decode_worker_init(_worker_id: int) -> None:
    """Decode workers yield the CPU to the model's loop and its host-side work, which keeps torch's
    thread count; they get the cores whenever it waits."""
    import torch

    torch.set_num_threads(1)
    try:
        os.nice(DECODE_NICENESS)
    except OSError:
        pass


DECODE_NICENESS = 10


def _embed_into(buf: dict, batch: dict, clip, decoder, on_device, inputs, text: bool) -> None:
    import torch

    from datapruner.embed.model import autocast

    buf["errors"].extend(batch["errors"])
    rows = batch["rows"]
    if on_device is not None:
        from datapruner.embed.device_decode import model_inputs

        images, failed = model_inputs(batch, clip, on_device, decoder)
        buf["errors"].extend({"key": rows[i]["key"], "stage": "decode", "reason": r} for i, r in failed.items())
        rows = [r for i, r in enumerate(rows) if i not in failed]
    else:
        images = None if batch["images"] is None else inputs(batch["images"], clip.device)
    if not rows:
        return
    captions = [r["caption"] for r in rows]
    with torch.inference_mode(), autocast(clip):
        buf["img"].append(_normalised(clip.model.encode_image(images)))
        if text and any(c is not None for c in captions):
            tokens = clip.tokenizer([c or "" for c in captions]).to(clip.device)
            buf["txt"].append(_normalised(clip.model.encode_text(tokens)))
        else:
            buf["txt"].append(None)
    buf["rows"].extend(rows)


def _normalised(x) -> np.ndarray:
    x = x.float()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _finish_shard(run: RunDir, part: str, shard: str, buf: dict, dim: int, source: dict | None) -> dict:
    img = np.concatenate(buf["img"]) if buf["img"] else np.zeros((0, dim), np.float16)
    bad = write_embed_part(run, part, shard, img, _text_matrix(buf, dim), buf["rows"], buf["errors"], source)
    return {"samples": len(buf["rows"]) - bad, "errors": len(buf["errors"]) + bad, "shards": 1, "bad_embeddings": bad}


def _text_matrix(buf: dict, dim: int) -> np.ndarray | None:
    """Text embeddings when any batch of the shard had captions; batches without get zero rows."""
    if all(t is None for t in buf["txt"]):
        return None
    blocks = [t if t is not None else np.zeros((len(i), dim), np.float32) for t, i in zip(buf["txt"], buf["img"])]
    return np.concatenate(blocks)
