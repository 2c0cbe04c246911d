"""Decode workers: each takes whole shards and yields preprocessed batches that never cross shards."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Callable, Iterator

import torch
import torch.utils.data

from datapruner.config import Config
from datapruner.embed.decode import (UnusableSample, beside_rows, decode_image, image_bytes, is_device_jpeg,
                                     metadata_row, open_image)
from datapruner.io.identity import Fingerprint
from datapruner.io.shards import open_shard
from datapruner.io.tar_samples import SHARD_KEY, iter_samples
from datapruner.reasons import reason


@dataclass(frozen=True)
class ShardTask:
    index: int
    url: str


@dataclass(frozen=True)
class Decoder:
    """How a sample becomes a model input and a metadata row."""

    preprocess: Callable
    image_size: int | None = None  # the model's input size: big JPEGs are decoded at a reduced scale ≥ this
    caption_field: str = "caption"
    label_field: str = "label"
    max_pixels: int = Config.max_image_pixels  # larger images are refused from their header
    allow_unsafe_names: bool = False  # keep samples whose member names would escape an extraction dir
    jpegs_raw: bool = False  # JPEGs a GPU decoder takes are passed on undecoded (embed/device_decode.py)
    full_decode_pixels: int = Config.max_full_decode_pixels  # the same for formats decoded only at full size


def shard_batches(task: ShardTask, decoder: Decoder, batch_size: int, map_fn: Callable = map) -> Iterator[dict]:
    """Batches of one shard, in sample order; the last one has last=True (and may be empty) and carries the
    shard's identity as it was read (`source`, io/identity.py).

    Every sample read becomes a row or an error; a shard that cannot be opened becomes one error row.
    A batch's samples are decoded with map_fn as they are read (a thread pool's map submits each sample
    as the tar yields it, so reading the next overlaps decoding this one on every core), and a batch
    holds batch_size rows whichever map decodes it.
    """
    batch = _empty_batch(task)
    prepare = partial(prepared, decoder=decoder, shard=task.url, beside=beside_rows(task.url) or {})
    shard_errors: list[dict] = []
    fingerprint = Fingerprint()
    samples = _read(task, decoder, shard_errors, fingerprint)
    while outcomes := list(map_fn(prepare, islice(samples, batch_size - len(batch["rows"])))):
        for outcome in outcomes:
            _add(batch, outcome)
        if len(batch["rows"]) == batch_size:
            yield batch
            batch = _empty_batch(task)
    batch["errors"].extend(shard_errors)
    batch["last"], batch["source"] = True, fingerprint.identity
    yield batch


def _read(task: ShardTask, decoder: Decoder, shard_errors: list[dict], fingerprint: Fingerprint) -> Iterator:
    """The shard's samples; a shard that cannot be opened adds its error row to shard_errors."""
    try:
        with open_shard(task.url, fingerprint) as stream:
            yield from iter_samples(stream, decoder.allow_unsafe_names)
    except OSError as exc:  # read failures inside the tar are the samples' errors (iter_samples)
        detail = f"{type(exc).__name__}: {exc}"
        shard_errors.append({"key": SHARD_KEY, "stage": "read", "reason": reason("cannot open shard", detail)})


def _empty_batch(task: ShardTask) -> dict:
    """images: the preprocessed inputs of the rows not in jpeg_rows; jpegs: the raw JPEGs of jpeg_rows."""
    return {"index": task.index, "shard": task.url, "images": [], "rows": [], "errors": [], "last": False,
            "jpegs": [], "jpeg_rows": [], "source": None}


@dataclass(frozen=True)
class Prepared:
    """One sample, decoded: its metadata row and model input (or raw JPEG), or its error row."""

    row: dict | None = None
    image: torch.Tensor | None = None
    jpeg: torch.Tensor | None = None  # passed on undecoded (Decoder.jpegs_raw)
    error: dict | None = None


def prepared(sample, decoder: Decoder, shard: str, beside: dict) -> Prepared:
    if sample.error:
        return Prepared(error={"key": sample.key, "stage": "read", "reason": sample.error})
    try:
        data = image_bytes(sample.members)
        raw = decoder.jpegs_raw and is_device_jpeg(open_image(data, decoder.max_pixels, decoder.full_decode_pixels))
        image = None if raw else model_input(decode_image(data, decoder.image_size, max_pixels=decoder.max_pixels,
                                                          full_decode_pixels=decoder.full_decode_pixels), decoder)
        row = metadata_row(sample, shard, beside, decoder.caption_field, decoder.label_field)
    except UnusableSample as exc:
        return Prepared(error={"key": sample.key, "stage": "decode", "reason": str(exc)})
    jpeg = torch.frombuffer(bytearray(data), dtype=torch.uint8) if raw else None
    return Prepared(row=row, image=image, jpeg=jpeg)


def _add(batch: dict, outcome: Prepared) -> None:
    if outcome.error is not None:
        batch["errors"].append(outcome.error)
        return
    if outcome.jpeg is not None:
        batch["jpeg_rows"].append(len(batch["rows"]))
        batch["jpegs"].append(outcome.jpeg)
    else:
        batch["images"].append(outcome.image)
    batch["rows"].append(outcome.row)


def model_input(image, decoder: Decoder):
    try:
        return decoder.preprocess(image)
    # a decoded image the transforms cannot take (odd size, say) must not kill the DataLoader worker
    except Exception as exc:
        raise UnusableSample(reason("undecodable image", f"preprocessing failed: {type(exc).__name__}: {exc}")) from None


class ShardStream(torch.utils.data.IterableDataset):
    """Shards split whole across DataLoader workers, so decoding runs beside the model."""

    def __init__(self, tasks: list[ShardTask], decoder: Decoder, batch_size: int):
        super().__init__()
        self.tasks, self.decoder, self.batch_size = tasks, decoder, batch_size

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        mine = self.tasks if info is None else self.tasks[info.id::info.num_workers]
        for task in mine:
            for batch in shard_batches(task, self.decoder, self.batch_size):
                yield collated(batch)


def collated(batch: dict) -> dict:
    """The batch with its preprocessed images as one tensor (None when it has none)."""
    batch["images"] = torch.stack(batch["images"]) if batch["images"] else None
    return batch
