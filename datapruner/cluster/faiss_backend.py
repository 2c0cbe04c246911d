"""Where the GEMM-bound steps run: faiss's GPU count (kept for the callers that ask) and the centroid index.

The nearest-centroid search itself is datapruner/cluster/nearest.py (torch: bf16 on CUDA or on a CPU with
bf16 dot products, plus an exact check), so that the answer is the same on every device and precision.
No faiss index runs on a GPU: the device is --device, resolved by datapruner/devices.py.
"""

from __future__ import annotations


def gpu_count() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def inner_product_index(centroids, device: str = "auto", one_pass: bool = False):
    """An exact nearest-centroid (largest inner product) index over the centroids, on `device` (cuda:N honoured)."""
    from datapruner.cluster.nearest import CentroidIndex

    return CentroidIndex(centroids, device, one_pass)
