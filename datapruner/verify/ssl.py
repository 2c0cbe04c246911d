"""A self-supervised image embedding trained on the training images only (no pretrained model).

SimCLR (Chen et al., 2020): two augmented views of each image, a small CNN backbone and an MLP projection head,
the NT-Xent loss over the 2B views of a batch. Prototypicality and DBP are then computed on the backbone's
features, as Sorscher et al. do with a self-supervised (SwAV) space; the projection head is discarded.

Augmentations run on batches of torch tensors: a random resized crop and horizontal flip as one affine grid
(F.grid_sample), brightness/contrast jitter, and Gaussian noise, all drawn from a seeded generator, so a seed
and a thread count give the same encoder. `seconds` caps the wall-clock time: the cosine schedule then follows
whichever of steps or time runs out first, so an early stop still ends annealed (and is no longer deterministic).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from datapruner.errors import DataprunerError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSLSpec:
    dim: int = 64  # backbone feature (embedding) dimension
    width: int = 32  # channels of the first conv block (then 2x, 4x)
    proj_dim: int = 128  # projection head output, where the loss is computed
    crop_side: int = 24  # side of the training views and of the images embed() sees
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    temperature: float = 0.2
    crop_scale: tuple[float, float] = (0.35, 1.0)  # area share of the crop
    jitter: float = 0.4  # brightness and contrast factors drawn from [1 - jitter, 1 + jitter]
    noise_std: float = 0.05  # Gaussian noise on [0, 1] pixels


def _backbone(channels: int, spec: SSLSpec):
    """Three conv blocks (width, 2 width, 4 width channels), global average pooling, a linear map to `dim`."""
    from torch import nn

    w = spec.width

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(channels, w), nn.MaxPool2d(2),
        *block(w, 2 * w), nn.MaxPool2d(2),
        *block(2 * w, 4 * w), *block(4 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, spec.dim),
    )


def _head(spec: SSLSpec):
    from torch import nn

    return nn.Sequential(nn.BatchNorm1d(spec.dim), nn.ReLU(inplace=True), nn.Linear(spec.dim, 2 * spec.dim),
                         nn.BatchNorm1d(2 * spec.dim), nn.ReLU(inplace=True), nn.Linear(2 * spec.dim, spec.proj_dim))


class SSLEncoder:
    """The trained backbone with the pixel statistics and input side it was trained with."""

    def __init__(self, backbone, head, spec: SSLSpec, channels: int, mean: float, std: float):
        self.backbone, self.head, self.spec = backbone, head, spec
        self.channels, self.mean, self.std = channels, mean, std
        self.steps = 0  # optimizer steps it was trained for
        self.seconds = 0.0

    @property
    def dim(self) -> int:
        return self.spec.dim


def as_nchw(images: np.ndarray):
    """uint8 (n, h, w) or (n, h, w, c) as a float torch tensor (n, c, h, w) in [0, 1]."""
    import torch

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, :, :, None]
    if images.ndim != 4:
        raise DataprunerError(f"images must be (n, h, w) or (n, h, w, c), got shape {images.shape}")
    return torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)


def _resize(x, side: int):
    import torch.nn.functional as F

    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def augment(x, spec: SSLSpec, gen):
    """One random view per image of x (B, c, h, w) in [0, 1], at spec.crop_side x spec.crop_side."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    area = uniform(*spec.crop_scale)
    log_ratio = uniform(math.log(3 / 4), math.log(4 / 3))
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # crop width as a share of the image
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx, ty = (1 - sx) * uniform(-1.0, 1.0), (1 - sy) * uniform(-1.0, 1.0)  # crop centre, kept inside the image
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, tx, sy, ty
    grid = F.affine_grid(theta, [b, x.shape[1], spec.crop_side, spec.crop_side], align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    shape = (b, 1, 1, 1)
    contrast = uniform(1 - spec.jitter, 1 + spec.jitter).view(shape)
    brightness = uniform(1 - spec.jitter, 1 + spec.jitter).view(shape)
    centre = v.mean(dim=(1, 2, 3), keepdim=True)
    v = ((v - centre) * contrast + centre) * brightness
    v = v + spec.noise_std * torch.randn(v.shape, generator=gen)
    return v.clamp_(0.0, 1.0)


def nt_xent(z1, z2, temperature: float):
    """SimCLR's loss: each view's positive is the other view of its image, the other 2B - 2 views are negatives."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def _lr_factor(progress: float, warmup_frac: float) -> float:
    if progress < warmup_frac:
        return progress / warmup_frac
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup_frac) / (1 - warmup_frac))))


def _pick_device(device: str) -> str:
    from datapruner.embed.model import pick_device

    picked = pick_device(device)
    if picked == "cpu" and device == "auto":
        log.info("no GPU found: training the SSL encoder on the CPU")
    return picked


def train_encoder(images: np.ndarray, dim: int = 64, seed: int = 0, seconds: float | None = None, epochs: float = 3.0,
                  threads: int | None = None, device: str = "auto", spec: SSLSpec | None = None) -> SSLEncoder:
    """A SimCLR encoder trained on `images` (uint8, (n, h, w) or (n, h, w, c)) for `epochs` passes or `seconds`.

    `spec` sets the architecture, augmentations and optimiser (its dim is replaced by `dim`); `threads` sets torch's
    CPU threads for the call. epochs=0 gives the random-init encoder (its BatchNorm statistics still taken from the images), the baseline an
    SSL space must beat.
    """
    import torch

    spec = SSLSpec(dim=dim) if spec is None else dataclasses.replace(spec, dim=dim)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(images, spec, seed, seconds, epochs, _pick_device(device))
    finally:
        torch.set_num_threads(previous_threads)


def _train(images: np.ndarray, spec: SSLSpec, seed: int, seconds: float | None, epochs: float, dev: str) -> SSLEncoder:
    import torch

    torch.manual_seed(seed)
    x = as_nchw(images)
    mean, std = float(x.mean()), float(x.std().clamp(min=1e-6))
    enc = SSLEncoder(_backbone(x.shape[1], spec), _head(spec), spec, x.shape[1], mean, std)
    enc.backbone.to(dev)
    enc.head.to(dev)
    steps = max(1, int(epochs * len(x) // spec.batch_size)) if epochs > 0 else 0
    if steps > 0:
        _fit(enc, x, steps, seconds, seed, dev)
    _calibrate_batchnorm(enc, x, seed, dev)
    return enc


def _fit(enc: SSLEncoder, x, steps: int, seconds: float | None, seed: int, dev: str) -> None:
    import torch

    spec = enc.spec
    params = list(enc.backbone.parameters()) + list(enc.head.parameters())
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    enc.backbone.train()
    enc.head.train()
    start, order, pos, loss = time.monotonic(), torch.randperm(len(x), generator=gen), 0, torch.tensor(float("nan"))
    for step in range(steps):
        elapsed = time.monotonic() - start
        if seconds is not None and elapsed >= seconds:
            log.info("SSL encoder: wall-clock cap of %.0f s reached after %d of %d steps", seconds, step, steps)
            break
        progress = max(step / steps, elapsed / seconds if seconds else 0.0)
        for group in opt.param_groups:
            group["lr"] = spec.lr * _lr_factor(progress, spec.warmup_frac)
        if pos + spec.batch_size > len(x):
            order, pos = torch.randperm(len(x), generator=gen), 0
        batch = x[order[pos:pos + spec.batch_size]]
        pos += spec.batch_size
        v1, v2 = (_normalise(enc, augment(batch, spec, gen)).to(dev) for _ in range(2))
        loss = nt_xent(enc.head(enc.backbone(v1)), enc.head(enc.backbone(v2)), spec.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        enc.steps = step + 1
        if enc.steps % 100 == 0:
            log.info("SSL encoder: step %d of %d, loss %.3f, %.0f s", enc.steps, steps, float(loss.detach()), elapsed)
    enc.seconds = time.monotonic() - start
    log.info("SSL encoder: %d steps in %.1f s, last loss %.3f", enc.steps, enc.seconds, float(loss.detach()))


def _normalise(enc: SSLEncoder, v):
    return (v - enc.mean) / enc.std


def _calibrate_batchnorm(enc: SSLEncoder, x, seed: int, dev: str, n: int = 8192, batch_size: int = 1024) -> None:
    """BatchNorm running statistics re-estimated on clean (un-augmented) images, the inputs embed() sees."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    sample = x[torch.randperm(len(x), generator=gen)[:n]]
    for m in enc.backbone.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
    enc.backbone.train()
    with torch.no_grad():
        for i in range(0, len(sample), batch_size):
            enc.backbone(_prepare(enc, sample[i:i + batch_size]).to(dev))
    enc.backbone.eval()
    enc.head.eval()


def _prepare(enc: SSLEncoder, x):
    return _normalise(enc, _resize(x, enc.spec.crop_side))


def embed(encoder: SSLEncoder, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(n, dim) float32 L2-normalised backbone features of uint8 images (the projection head is not used)."""
    import torch
    import torch.nn.functional as F

    x = as_nchw(images)
    if x.shape[1] != encoder.channels:
        raise DataprunerError(f"the encoder was trained on {encoder.channels}-channel images, got {x.shape[1]}")
    dev = next(encoder.backbone.parameters()).device
    encoder.backbone.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            z = encoder.backbone(_prepare(encoder, x[i:i + batch_size]).to(dev))
            out.append(F.normalize(z, dim=1).float().cpu())
    if not out:
        return np.zeros((0, encoder.dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)
