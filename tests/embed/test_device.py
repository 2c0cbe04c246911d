import logging

import numpy as np
import pytest
import torch
from conftest import TINY

from datapruner import api
from datapruner.cluster.faiss_backend import gpu_count
from datapruner.config import Config
from datapruner.devices import forget_resolved
from datapruner.embed.model import pick_device, pick_precision
from datapruner.errors import DataprunerError

no_gpu = not torch.cuda.is_available()


@pytest.mark.skipif(not no_gpu, reason="checks the CPU fallback")
def test_auto_embeds_on_the_cpu_with_a_log_line_and_cuda_is_refused(caplog):
    forget_resolved()  # an earlier test may have resolved auto (and logged) already
    with caplog.at_level(logging.INFO):
        assert pick_device("auto") == "cpu"
    assert "--device auto runs the model, the GEMMs and the probes on the CPU" in caplog.text
    with pytest.raises(DataprunerError, match="--device cuda: torch finds no CUDA GPU"):
        pick_device("cuda")
    assert pick_precision("cpu", "fp32") == "fp32"


@pytest.mark.gpu
@pytest.mark.skipif(no_gpu, reason="needs a CUDA GPU")
def test_gpu_embeddings_agree_with_cpu(tmp_path, shard_dir):
    runs = {}
    for device in ("cpu", "cuda"):
        runs[device] = tmp_path / device
        api.embed(str(shard_dir), runs[device], Config(**{**TINY, "device": device}), progress=False)
    a = np.load(runs["cpu"] / "embeddings/img_emb/img_emb_0.npy").astype(np.float32)
    b = np.load(runs["cuda"] / "embeddings/img_emb/img_emb_0.npy").astype(np.float32)
    assert np.min(np.sum(a * b, axis=1)) > 0.98  # bf16 autocast vs fp32: same directions


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() == 0, reason="needs faiss-gpu and a GPU")
def test_faiss_gpu_kmeans_runs(run_copy):
    assert api.cluster(run_copy, Config(clusters=3, device="auto", seed=1))["clusters"] == 3
