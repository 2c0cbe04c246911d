"""faiss on the GPU when there is one, on the CPU otherwise (with a log line saying so)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def gpu_count() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def use_gpu(device: str = "auto") -> bool:
    if device == "cpu":
        return False
    if gpu_count() > 0:
        return True
    log.info("faiss has no GPU here (faiss-cpu or no CUDA device): clustering on the CPU")
    return False


def inner_product_index(centroids, device: str = "auto"):
    """An exact inner-product index over the centroids, on a GPU when one is available."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    if use_gpu(device):
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(centroids)
    return index
