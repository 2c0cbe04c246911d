"""Decode workers: each takes whole shards and yields preprocessed batches that never cross shards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.utils.data

from datapruner.config import Config
from datapruner.embed.decode import (UnusableSample, beside_rows, decode_image, image_bytes, is_device_jpeg,
                                     metadata_row, open_image)
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


def shard_batches(task: ShardTask, decoder: Decoder, batch_size: int) -> Iterator[dict]:
    """Batches of one shard, in sample order; the last one has last=True (and may be empty).

    Every sample read becomes a row or an error; a shard that cannot be opened becomes one error row.
    """
    batch = _empty_batch(task)
    beside = beside_rows(task.url)  # img2dataset's per-shard parquet: its columns join the metadata
    try:
        with open_shard(task.url) as stream:
            for sample in iter_samples(stream, decoder.allow_unsafe_names):
                _add_sample(batch, sample, decoder, beside)
                if len(batch["rows"]) == batch_size:
                    yield batch
                    batch = _empty_batch(task)
    except OSError as exc:  # read failures inside the tar are the samples' errors (iter_samples)
        detail = f"{type(exc).__name__}: {exc}"
        batch["errors"].append({"key": SHARD_KEY, "stage": "read", "reason": reason("cannot open shard", detail)})
    batch["last"] = True
    yield batch


def _empty_batch(task: ShardTask) -> dict:
    """images: the preprocessed inputs of the rows not in jpeg_rows; jpegs: the raw JPEGs of jpeg_rows."""
    return {"index": task.index, "shard": task.url, "images": [], "rows": [], "errors": [], "last": False,
            "jpegs": [], "jpeg_rows": []}


def _add_sample(batch: dict, sample, decoder: Decoder, beside: dict | None = None) -> None:
    if sample.error:
        batch["errors"].append({"key": sample.key, "stage": "read", "reason": sample.error})
        return
    try:
        data = image_bytes(sample.members)
        raw = decoder.jpegs_raw and is_device_jpeg(open_image(data, decoder.max_pixels))
        image = None if raw else model_input(decode_image(data, decoder.image_size, max_pixels=decoder.max_pixels),
                                              decoder)
        row = metadata_row(sample, batch["shard"], beside or {}, decoder.caption_field, decoder.label_field)
    except UnusableSample as exc:
        batch["errors"].append({"key": sample.key, "stage": "decode", "reason": str(exc)})
        return
    if raw:
        batch["jpeg_rows"].append(len(batch["rows"]))
        batch["jpegs"].append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    else:
        batch["images"].append(image)
    batch["rows"].append(row)


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
