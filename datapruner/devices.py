"""The one device rule: what --device (auto | cpu | cuda | cuda:N) means for every model, GEMM and probe.

The embed model, k-means, assignment, SemDeDup's similarities, EL2N's probes and verify's SSL encoder all
resolve cfg.device here, so `--device cuda:1` puts every one of them on GPU 1. auto is CUDA when torch sees
a GPU, else the CPU (with a log line); a GPU that was asked for by name and is not there is a
DataprunerError, never a silent CPU run. torch is imported inside the functions: validate.py imports this
module, and `datapruner --help` must not pay for torch.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from datapruner.errors import DataprunerError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
DEVICES = "auto, cpu, cuda, cuda:N"


def check_device(device: Any) -> None:
    """auto | cpu | cuda | cuda:N; anything else is refused (validate.py, when a command starts)."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise DataprunerError(f"--device {device}: unknown; choose one of {DEVICES}")


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device that `device` names on this machine (DataprunerError when it names none)."""
    check_device(device)
    return _resolved(device)


@lru_cache(maxsize=None)  # once per process and name: one log line however many clusters or parts ask
def _resolved(device: str) -> torch.device:
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if device != "auto":
            raise DataprunerError(f"--device {device}: torch finds no CUDA GPU on this machine; "
                                  "use --device cpu (or auto: a GPU when there is one)")
        log.info("no CUDA GPU found: --device auto runs the model, the GEMMs and the probes on the CPU")
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda")
    picked = torch.device(device)
    count = torch.cuda.device_count()
    if picked.index is not None and picked.index >= count:
        raise DataprunerError(f"--device {device}: this machine has {count} GPU(s); "
                              f"choose auto, cpu, cuda or cuda:0..cuda:{count - 1}")
    return picked


def forget_resolved() -> None:
    """Resolve afresh on the next call (tests that change what torch sees)."""
    _resolved.cache_clear()
