"""Decode sized to the machine: decode worker processes beside a GPU model follow the usable cores; with
the model on the CPU a thread pool decodes each batch, into the batches the workers would make."""

import os

import torch
from shardmaker import image_bytes, sample_members, write_tar

from datapruner.embed.device_decode import worker_preprocess
from datapruner.embed.model import load_clip
from datapruner.embed.embedding import batch_source, decode_workers, local_batches, threaded_batches, usable_cores
from datapruner.embed.stream import Decoder, ShardTask
from datapruner.config import Config


def test_decode_workers_follow_the_usable_cores_and_the_shards():
    assert usable_cores() == len(os.sched_getaffinity(0))
    assert decode_workers(2, 8, cores=1) == 0  # one core: decode in the model's process
    assert decode_workers(2, 8, cores=2) == 1  # one core kept for the model's loop
    assert decode_workers(2, 8, cores=16) == 2  # as asked
    assert decode_workers(8, 3, cores=16) == 3  # a worker takes whole shards
    assert decode_workers(0, 8, cores=16) == 0


def _shards(tmp_path) -> list[ShardTask]:
    """Good JPEGs and PNGs with bad samples between them (so batches refill), and a missing shard."""
    good = [(f"{i:03d}", sample_members(i, i % 3, "png" if i % 4 == 0 else "jpg")) for i in range(11)]
    bad = [("bad-a", {"jpg": b"\x13\x37" * 50}), ("bad-b", {"txt": b"no image"})]
    first = write_tar(tmp_path / "a.tar", good[:3] + bad + good[3:7])
    second = write_tar(tmp_path / "b.tar", good[7:] + [("bad-c", {"png": image_bytes(0, 1, "PNG")[:40]})])
    return [ShardTask(0, str(first)), ShardTask(1, str(tmp_path / "missing.tar")), ShardTask(2, str(second))]


def test_threads_decode_the_batches_the_workers_make(tmp_path):
    clip = load_clip("datapruner-tiny", "none", "cpu", "fp32")
    decoder = Decoder(worker_preprocess(clip.preprocess), clip.image_size)
    tasks = _shards(tmp_path)
    workers = list(local_batches(tasks, decoder, 3, workers=1))
    threads = list(threaded_batches(tasks, decoder, 3, threads=2))
    assert [(b["index"], b["last"], len(b["rows"])) for b in threads] == \
        [(b["index"], b["last"], len(b["rows"])) for b in workers]
    assert max(len(b["rows"]) for b in threads) == 3  # full batches although samples failed between rows
    for a, b in zip(workers, threads):
        assert a["rows"] == b["rows"] and a["errors"] == b["errors"]
        assert (a["images"] is None and b["images"] is None) or torch.equal(a["images"], b["images"])
    keys = [r["key"] for b in threads for r in b["rows"]] + [e["key"] for b in threads for e in b["errors"]]
    assert sorted(keys) == sorted([f"{i:03d}" for i in range(11)] + ["bad-a", "bad-b", "bad-c", "__shard__"])


def test_a_model_on_the_cpu_takes_its_batches_from_threads(tmp_path):
    clip = load_clip("datapruner-tiny", "none", "cpu", "fp32")
    decoder = Decoder(worker_preprocess(clip.preprocess), clip.image_size)
    source = batch_source(_shards(tmp_path), decoder, 3, Config().num_workers, clip)
    assert source.gi_code is threaded_batches.__code__
    assert sum(len(b["rows"]) for b in source) == 11
