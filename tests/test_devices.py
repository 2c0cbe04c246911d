"""One device rule (datapruner/devices.py) for the embed model, the GEMMs and the EL2N probes.

CUDA is made to look present (two GPUs) or absent by patching torch.cuda.is_available / device_count;
nothing is allocated on a GPU: the tests look at the device each consumer resolves to.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from datapruner import devices
from datapruner.cluster import gemm
from datapruner.config import Config
from datapruner.embed.model import pick_device
from datapruner.errors import DataprunerError
from datapruner.metrics import el2n
from datapruner.validate import check_config

CONSUMERS = {
    "embed model": lambda name: torch.device(pick_device(name)),
    "k-means, assignment and SemDeDup GEMMs": gemm.torch_device,
    "EL2N probes": el2n.torch_device,
}


def _cuda(monkeypatch, gpus: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)


@pytest.fixture(autouse=True)
def fresh_resolution():
    devices.forget_resolved()
    yield
    devices.forget_resolved()  # the next test sees the real torch.cuda again


@pytest.fixture
def two_gpus(monkeypatch):
    _cuda(monkeypatch, 2)


@pytest.fixture
def no_gpu(monkeypatch):
    _cuda(monkeypatch, 0)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_every_consumer_runs_on_the_gpu_named(two_gpus, consumer):
    resolve = CONSUMERS[consumer]
    assert resolve("cuda:1") == torch.device("cuda", 1)
    assert resolve("cuda:0") == torch.device("cuda", 0)
    assert resolve("cuda").type == resolve("auto").type == "cuda"
    assert resolve("cpu") == torch.device("cpu")


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_a_gpu_index_past_the_last_gpu_is_refused(two_gpus, consumer):
    with pytest.raises(DataprunerError, match=r"--device cuda:2: this machine has 2 GPU\(s\); .*cuda:0\.\.cuda:1"):
        CONSUMERS[consumer]("cuda:2")


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_without_a_gpu_auto_runs_on_the_cpu_and_says_so(no_gpu, consumer, caplog):
    with caplog.at_level(logging.INFO, logger="datapruner.devices"):
        assert CONSUMERS[consumer]("auto") == torch.device("cpu")
    assert "no CUDA GPU found: --device auto runs the model, the GEMMs and the probes on the CPU" in caplog.text


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_without_a_gpu_a_named_gpu_is_refused_not_replaced(no_gpu, consumer, name):
    with pytest.raises(DataprunerError, match=f"--device {name}: torch finds no CUDA GPU"):
        CONSUMERS[consumer](name)


def test_the_fallback_is_logged_once_per_process(no_gpu, caplog):
    with caplog.at_level(logging.INFO, logger="datapruner.devices"):
        for _ in range(3):  # SemDeDup resolves once per cluster
            gemm.torch_device("auto")
    assert caplog.text.count("no CUDA GPU found") == 1


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:", "cuda:-1", "CPU", "", "mps", None, 1])
def test_a_name_outside_the_rule_is_refused_by_the_check_and_by_every_consumer(bad):
    message = "choose one of auto, cpu, cuda, cuda:N"
    with pytest.raises(DataprunerError, match=message):
        check_config(Config(device=bad), "cluster")
    for resolve in CONSUMERS.values():
        with pytest.raises(DataprunerError, match=message):
            resolve(bad)


def test_importing_the_rule_does_not_import_torch():
    code = "import sys, datapruner.devices, datapruner.validate; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
