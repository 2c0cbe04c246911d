"""faiss, the clustering engine: its exact flat inner-product index and its k-means, on the CPU or on GPUs.

The device follows --device by the one rule of datapruner/devices.py: cuda:N puts the index on GPU N,
cuda or auto on every GPU of the node (faiss-gpu). Where faiss has no GPU (faiss-cpu installed), a GPU
device runs the index on the CPU, with a log line saying so.
"""

from __future__ import annotations

import logging

import numpy as np

from datapruner.devices import resolve_device

log = logging.getLogger(__name__)


def gpu_count() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def on_device(index, device: str):
    """`index` (a CPU faiss index) where `device` says; returns (index, whether it is on a GPU)."""
    import faiss

    if resolve_device(device).type != "cuda":
        return index, False
    if gpu_count() == 0:
        _say_once("faiss has no GPU here (faiss-cpu, or no CUDA build): faiss runs on the CPU "
                  "(pip install 'datapruner[gpu]' for faiss-gpu)")
        return index, False
    if device.startswith("cuda:"):
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), int(device.split(":")[1]), index), True
    return faiss.index_cpu_to_all_gpus(index), True


def flat_ip_index(centroids: np.ndarray, device: str = "auto"):
    """An exact inner-product index over the centroids; returns (index, whether it is on a GPU)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    return on_device(index, device)


_said: set = set()


def _say_once(line: str) -> None:
    if line not in _said:
        _said.add(line)
        log.info(line)
