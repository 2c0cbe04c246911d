"""verify --task clip: a CLIP trained from scratch with open_clip's model and ClipLoss, in a short loop of our own.

open_clip's training script reads webdataset through a loader pinned to webdataset <= 0.2.86, so the kept
pairs are trained from tensors in memory. Every arm sees the same number of samples (`samples_seen`), in
batches of `batch_size`, with AdamW, linear warm-up and a cosine decay. The KD arm (Ben-Baruch et al.: the
student's loss is (1 − alpha)·task loss + alpha·distillation) mixes open_clip's contrastive loss with
DistillClipLoss's term: the cross-entropy of the student's in-batch image→text and text→image logits
against the teacher's softmax. On CUDA the step runs under bf16 autocast where the GPU computes it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
CONVERGED_DROP = 0.02  # the held-out loss fell by less than this share over the budget's last quarter


@dataclass(frozen=True)
class ClipSchedule:
    samples_seen: int
    batch_size: int = 64
    lr: float = 1e-3
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    alpha: float = 0.0  # KD weight (0: plain contrastive loss)

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.samples_seen / self.batch_size))


def new_clip(name: str, seed: int, device):
    """open_clip's `name` (datapruner's model_configs included) with a seeded random init, on `device`."""
    import open_clip
    import torch

    from datapruner.embed.catalog import MODEL_CONFIGS

    from datapruner.embed.model import _without_random_init_warning

    open_clip.add_model_config(MODEL_CONFIGS)
    torch.manual_seed(seed)
    with _without_random_init_warning(True):
        return open_clip.create_model(name, pretrained=None, device=device)


def autocast(device):
    """bf16 autocast on a GPU that computes bf16, else a no-op context (the CPU trains in float32)."""
    import contextlib

    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode(model, images, tokens, batch: int = 256):
    """Unit image and text features of the pairs, in eval mode and without gradients (float32)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    img, txt = [], []
    with torch.no_grad(), autocast(device):
        for lo in range(0, len(images), batch):
            img.append(model.encode_image(images[lo:lo + batch].to(device), normalize=True).float())
            txt.append(model.encode_text(tokens[lo:lo + batch].to(device), normalize=True).float())
    return torch.cat(img).cpu(), torch.cat(txt).cpu()


def encode_texts(model, tokens):
    """Unit text features (float32, on the CPU) of tokenized prompts."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), autocast(device):
        return model.encode_text(tokens.to(device), normalize=True).float().cpu()


def held_out_loss(model, images, tokens, batch: int) -> float:
    """open_clip's contrastive loss on held-out pairs (in batches of the training size)."""
    import open_clip
    import torch

    img, txt = encode(model, images, tokens)
    scale = model.logit_scale.exp().detach().float().cpu()
    loss, n = 0.0, 0
    for lo in range(0, len(img) - 1, batch):
        hi = min(len(img), lo + batch)
        with torch.no_grad():
            loss += float(open_clip.ClipLoss()(img[lo:hi], txt[lo:hi], scale)) * (hi - lo)
        n += hi - lo
    return loss / max(1, n)


def train_clip(model, images, tokens, schedule: ClipSchedule, seed: int, val=None, teacher=None) -> dict:
    """Train `model` on (images, tokens) for schedule.samples_seen samples; return what the row records.

    `val` (images, tokens) of held-out pairs gives the convergence check; `teacher` (a trained CLIP) is
    distilled with weight schedule.alpha."""
    import torch

    device = next(model.parameters()).device
    optimizers = _optimizers(model, schedule)
    lr_at = _lr_schedule(schedule)
    order = _batches(len(images), schedule, seed)
    checks = {round(schedule.steps * 0.75), schedule.steps}
    losses, start = {}, time.time()
    for step, rows in enumerate(order, 1):
        for group in (g for o in optimizers for g in o.param_groups):
            group["lr"] = lr_at(step)
        _step(model, optimizers, images[rows].to(device), tokens[rows].to(device), schedule.alpha, teacher)
        if val is not None and step in checks:
            losses[step] = held_out_loss(model, *val, schedule.batch_size)
            model.train()
    return {"steps": schedule.steps, "samples_seen": schedule.steps * min(schedule.batch_size, len(images)),
            "val_loss": _round(losses.get(schedule.steps)), "converged": converged(losses),
            "train_seconds": round(time.time() - start, 2)}


def converged(losses: dict) -> bool | None:
    """True when the held-out loss fell by less than CONVERGED_DROP of itself over the last quarter."""
    if len(losses) < 2:
        return None
    before, last = (losses[s] for s in sorted(losses))
    return bool(before - last < CONVERGED_DROP * abs(before))


def _optimizers(model, schedule: ClipSchedule) -> list:
    """AdamW for the model, lazy (sparse) Adam for the token embedding table: a step touches only the rows of
    the tokens in its batch, instead of all 49408 × width (on a CPU that dense update was half of each step)."""
    import torch

    table = model.token_embedding
    table.sparse = True
    rest = [p for n, p in model.named_parameters() if not n.startswith("token_embedding.")]
    return [torch.optim.AdamW(rest, lr=schedule.lr, weight_decay=schedule.weight_decay),
            torch.optim.SparseAdam(list(table.parameters()), lr=schedule.lr)]


def _step(model, optimizers, images, tokens, alpha: float, teacher) -> None:
    import open_clip
    import torch

    model.train()
    with autocast(images.device):
        img = model.encode_image(images, normalize=True)
        txt = model.encode_text(tokens, normalize=True)
        scale = model.logit_scale.exp()
        if teacher is None or alpha == 0:
            loss = open_clip.ClipLoss()(img, txt, scale)
        else:
            with torch.no_grad():
                t_img = teacher.encode_image(images, normalize=True)
                t_txt = teacher.encode_text(tokens, normalize=True)
            task, distill = open_clip.loss.DistillClipLoss()(img, txt, scale, t_img, t_txt, teacher.logit_scale.exp())
            loss = (1 - alpha) * task + alpha * distill
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.float().backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None and not p.grad.is_sparse], 1.0)
    for optimizer in optimizers:
        optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))


def _batches(n: int, schedule: ClipSchedule, seed: int):
    """schedule.steps batches of row indices: seeded passes over the n rows, drawn without replacement."""
    import torch

    rng = np.random.default_rng(seed)
    size = min(schedule.batch_size, n)
    stream = np.concatenate([rng.permutation(n) for _ in range(math.ceil(schedule.steps * size / n) + 1)])
    for step in range(schedule.steps):
        yield torch.from_numpy(stream[step * size:(step + 1) * size])


def _lr_schedule(schedule: ClipSchedule):
    warmup = max(1, round(schedule.warmup_frac * schedule.steps))

    def lr_at(step: int) -> float:
        if step <= warmup:
            return schedule.lr * step / warmup
        return schedule.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, schedule.steps - warmup)))
    return lr_at


def _round(value):
    return None if value is None else round(float(value), 5)
