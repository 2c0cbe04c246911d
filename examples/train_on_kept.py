"""Train on a run's kept samples without writing pruned shards, and distil a student from the stored embeddings.

    python examples/train_on_kept.py RUN [--steps 4] [--batch-size 16] [--workers 2]

RUN is a finished `datapruner score` (or `select`) run made with datapruner-tiny, e.g. over the shipped sample
data:  datapruner score datapruner/data/sample --keep 0.3 --out runs/demo --config configs/offline-demo.yaml

The kept samples come through datapruner.data.KeptSamples and webdataset's own stages (decode, to_tuple,
batched), as they would from pruned shards. Two short trainings run on them:

- CLIP: open_clip's tiny model, tokenizer, transforms and ClipLoss, with a few optimizer steps;
- a student: a fresh tiny image tower, projected onto the teacher's space, distilled from the image
  embeddings the embed step stored (img_emb.npy beside each sample: the teacher's view, read, not recomputed).

Each prints its loss per step, then the state a checkpoint would record to resume mid-epoch.
"""

from __future__ import annotations

import argparse

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
import webdataset as wds

from datapruner.data import KeptSamples
from datapruner.embed.catalog import MODEL_CONFIGS

MODEL = "datapruner-tiny"


def loader(run: str, preprocess, tokenizer, batch_size: int, workers: int, seed: int):
    """Batches of (images, tokens, teacher image embeddings): the reader, then webdataset's stages; and the
    reader (its state_dict is what a checkpoint records)."""
    samples = KeptSamples(run, seed=seed, embeddings=True, block=batch_size)
    pipeline = wds.DataPipeline(
        samples,
        wds.decode("pil"),
        wds.to_tuple("png;jpg;jpeg;webp", "txt", "img_emb.npy"),
        wds.map_tuple(preprocess, lambda text: tokenizer([text])[0], lambda emb: torch.from_numpy(emb.astype(np.float32))),
        wds.batched(batch_size, partial=True),
    )
    return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=workers), samples


def train_clip(batches, model, steps: int) -> list[float]:
    """open_clip's contrastive loss on the kept image-text pairs."""
    loss_fn, optimizer = open_clip.ClipLoss(), torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step, (images, tokens, _) in zip(range(steps), batches):
        image_features, text_features, scale = model(images, tokens)
        loss = loss_fn(image_features, text_features, scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        print(f"clip    step {step}: loss {loss.item():.4f}")
    return losses


def distil(batches, student, head, steps: int) -> tuple[list[float], int]:
    """The student's projected image features pulled towards the teacher's stored embeddings (cosine); the
    losses and the samples consumed."""
    optimizer = torch.optim.AdamW([*student.parameters(), *head.parameters()], lr=1e-3)
    losses, consumed = [], 0
    for step, (images, _, teacher) in zip(range(steps), batches):
        predicted = F.normalize(head(student.encode_image(images)), dim=-1)
        loss = (1 - (predicted * F.normalize(teacher, dim=-1)).sum(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        consumed += len(images)
        print(f"student step {step}: cosine distance to the teacher {loss.item():.4f}")
    return losses, consumed


def main(argv: list[str] | None = None) -> dict:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("run")
    args.add_argument("--steps", type=int, default=4)
    args.add_argument("--batch-size", type=int, default=16)
    args.add_argument("--workers", type=int, default=0)
    args.add_argument("--seed", type=int, default=0)
    opts = args.parse_args(argv)
    torch.manual_seed(opts.seed)
    open_clip.add_model_config(MODEL_CONFIGS)
    model, preprocess, _ = open_clip.create_model_and_transforms(MODEL, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL)
    batches, samples = loader(opts.run, preprocess, tokenizer, opts.batch_size, opts.workers, opts.seed)
    clip_losses = train_clip(iter(batches), model, opts.steps)
    student = open_clip.create_model(MODEL, pretrained=None)
    head = torch.nn.Linear(student.visual.output_dim, next(iter(batches))[2].shape[1])  # onto the teacher's dim
    student_losses, consumed = distil(iter(batches), student, head, opts.steps)
    state = samples.state_dict(consumed)
    print(f"resume state after {opts.steps} student steps: {state}")
    return {"clip": clip_losses, "student": student_losses, "state": state}


if __name__ == "__main__":
    main()
