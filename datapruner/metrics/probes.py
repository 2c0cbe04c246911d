"""An ensemble of S small probes (linear, or one hidden ReLU layer) on frozen embeddings, trained together.

The parameters are a dict of stacked tensors (leading axis = probe), so all S probes run as one
batched matmul: linear {"w": (S, d, C), "b": (S, 1, C)}, MLP {"w1", "b1", "w2", "b2"}. Each probe has
its own seeded initialisation and its own shuffle of every chunk, as in Paul et al.'s independent runs.
"""

from __future__ import annotations

import math


def init_probes(models: int, dim: int, classes: int, hidden: int, seed: int) -> dict:
    """nn.Linear-style uniform(±1/√fan_in) initialisation, seeded."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    shapes = [(dim, classes)] if hidden <= 0 else [(dim, hidden), (hidden, classes)]
    names = ["w"] if hidden <= 0 else ["w1", "w2"]
    params = {}
    for name, (fan_in, fan_out) in zip(names, shapes):
        bound = 1.0 / math.sqrt(fan_in)
        params[name] = (torch.rand(models, fan_in, fan_out, generator=gen) * 2 - 1) * bound
        params["b" + name[1:]] = (torch.rand(models, 1, fan_out, generator=gen) * 2 - 1) * bound
    return params


def probe_logits(params: dict, x):
    """x: (n, d) shared by every probe, or (S, n, d) one batch per probe → (S, n, C) logits."""
    import torch

    if "w" in params:
        return torch.matmul(x, params["w"]) + params["b"]
    hidden = torch.relu(torch.matmul(x, params["w1"]) + params["b1"])
    return torch.matmul(hidden, params["w2"]) + params["b2"]


def el2n_from_logits(logits, labels):
    """mean over probes of ||softmax(logits) − onehot(label)||₂; logits (S, n, C), labels (n,) → (n,)."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    onehot = torch.nn.functional.one_hot(labels.long(), probs.shape[-1]).to(probs.dtype)
    return torch.linalg.vector_norm(probs - onehot, dim=-1).mean(dim=0)


def train_on_chunk(params: dict, optimizer, x, y, batch_size: int, gen) -> float:
    """One pass over a chunk (x (n, d), y (n,)) with a separate shuffle per probe; returns the mean loss."""
    import torch

    models, n = next(iter(params.values())).shape[0], x.shape[0]
    order = torch.stack([torch.randperm(n, generator=gen) for _ in range(models)]).to(x.device)
    total, steps = 0.0, 0
    for lo in range(0, n, batch_size):
        idx = order[:, lo:lo + batch_size]
        logits = probe_logits(params, x[idx])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        (loss * models).backward()  # each probe's gradient is that of its own mean loss
        optimizer.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(1, steps)
