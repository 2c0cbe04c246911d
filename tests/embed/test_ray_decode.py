"""On Ray, a GPU embed actor's batches come from CPU decode tasks (runners/ray.decode_feed): the same
batches, in the same order, as the local decode workers make."""

import pytest
import torch
from shardmaker import write_shards

from datapruner.embed.model import load_clip
from datapruner.embed.embedding import local_batches
from datapruner.embed.stream import Decoder, ShardTask

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("jpegs_raw", [False, True])
def test_decode_tasks_feed_the_local_workers_batches(local_ray, tmp_path, jpegs_raw):
    from datapruner.runners.ray import decode_feed

    shards = write_shards(tmp_path, n_shards=3, per_shard=10)
    clip = load_clip("datapruner-tiny", "none", "cpu", "fp32")
    decoder = Decoder(clip.preprocess, clip.image_size, jpegs_raw=jpegs_raw)
    tasks = [ShardTask(i, str(p)) for i, p in enumerate(shards)]
    local = list(local_batches(tasks, decoder, 4, workers=0))
    remote = list(decode_feed(tasks, decoder, 4))
    assert [(b["index"], b["last"]) for b in remote] == [(b["index"], b["last"]) for b in local]
    for a, b in zip(local, remote):
        assert [r["key"] for r in a["rows"]] == [r["key"] for r in b["rows"]] and a["errors"] == b["errors"]
        assert a["jpeg_rows"] == b["jpeg_rows"] and all(torch.equal(x, y) for x, y in zip(a["jpegs"], b["jpegs"]))
        assert (a["images"] is None and b["images"] is None) or torch.equal(a["images"], b["images"])
