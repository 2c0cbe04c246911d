"""Decode workers sized to the cores this process may use."""

import os

from datapruner.embed.step import decode_workers, usable_cores


def test_decode_workers_follow_the_usable_cores_and_the_shards():
    assert usable_cores() == len(os.sched_getaffinity(0))
    assert decode_workers(2, 8, cores=1) == 0  # one core: decode in the model's process
    assert decode_workers(2, 8, cores=2) == 1  # one core kept for the model's loop
    assert decode_workers(2, 8, cores=16) == 2  # as asked
    assert decode_workers(8, 3, cores=16) == 3  # a worker takes whole shards
    assert decode_workers(0, 8, cores=16) == 0
