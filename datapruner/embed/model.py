"""Loading an open_clip model (name + pretrained tag | local checkpoint | none) on the best device."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)
MODEL_CONFIGS = Path(__file__).resolve().parent.parent / "model_configs"


@dataclass
class ClipModel:
    model: Any
    preprocess: Callable
    tokenizer: Callable
    device: str
    precision: str
    dim: int
    image_size: int | None  # the vision tower's input side, when it has one


def pick_device(requested: str = "auto") -> str:
    """auto | cpu | cuda | cuda:N (anything else is refused); cuda without a GPU falls back to the CPU."""
    from datapruner.validate import check_device

    check_device(requested)
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        if requested.startswith("cuda:") and int(requested[5:]) >= torch.cuda.device_count():
            from datapruner.errors import DataprunerError

            raise DataprunerError(f"--device {requested}: this machine has {torch.cuda.device_count()} GPU(s); "
                                  f"choose auto, cpu, cuda or cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return "cuda" if requested == "auto" else requested
    if requested != "auto":
        log.warning("%s was asked for but no GPU is available: falling back to the CPU", requested)
    else:
        log.info("no GPU found: embedding on the CPU")
    return "cpu"


def pick_precision(device: str, requested: str = "auto") -> str:
    import torch

    if device == "cpu":
        return "fp32"
    if requested != "auto":
        return requested
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(clip: ClipModel):
    """bf16/fp16 autocast on CUDA; plain fp32 on the CPU."""
    import torch

    if clip.device == "cpu" or clip.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if clip.precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def load_clip(name: str, pretrained: str | None, device: str = "auto", precision: str = "auto",
              seed: int = 0) -> ClipModel:
    """`pretrained` is an open_clip tag, a local checkpoint path, or "none" (random init, offline).

    Random init is seeded, so every process (a rerun, a Ray actor) builds the same model.
    """
    import open_clip
    import torch

    open_clip.add_model_config(MODEL_CONFIGS)
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
    tag = None if pretrained in (None, "", "none") else pretrained
    device = pick_device(device)
    precision = pick_precision(device, precision)
    if tag is None:
        torch.manual_seed(seed)
    log.info("loading open_clip %s (pretrained=%s) on %s, %s", name, tag or "random init", device, precision)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=tag, device=device)
    model.eval()
    return ClipModel(model, preprocess, open_clip.get_tokenizer(name), device, precision, model.visual.output_dim,
                     _input_side(model.visual))


def _input_side(visual) -> int | None:
    size = getattr(visual, "image_size", None)
    if isinstance(size, (tuple, list)):
        return max(size)
    return size if isinstance(size, int) else None
