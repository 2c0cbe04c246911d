"""`datapruner verify RUN --task clip`: per seed and pruning method × kept fraction, a CLIP trained from scratch on
the kept pairs (with and without KD from the full pool's CLIP of that seed), all for the same samples seen,
evaluated on held-out pairs (verify/clip_eval.py); results and verdicts in RUN/verify-clip (verify/clip_verdicts.py).

Per seed, the pool is scored afresh (k-means seeded by it), the full-pool CLIP is trained first and is the KD
arms' teacher (so the teacher is resampled with the seed), then every other arm. Arms run in forked
processes of one torch thread on the CPU, one after another in this process on a GPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datapruner.verify.clip_model import ClipSchedule

log = logging.getLogger(__name__)
BUDGET = "samples_seen"


@dataclass
class ClipData:
    train: object  # clip_data.Pairs
    val: object
    test: object
    table: object  # the training rows' (shard, key, label, caption)
    img: np.ndarray  # the training rows' stored embeddings
    txt: np.ndarray
    dropped_test_copies: int = 0


def run_clip_verify(run, cfg, spec, progress: bool = True) -> dict:
    """Load, split, prune, train and publish; return the summary (as `verify` does for classification)."""
    from datapruner.devices import resolve_device
    from datapruner.io.rundir import RunDir
    from datapruner.verify.clip_methods import check_methods

    check_methods(spec.methods)
    start = time.time()
    device = resolve_device(cfg.device)
    data = load(run, cfg, spec)
    arms = kept_subsets(data, spec, cfg)
    rows, correct = train_arms(data, arms, spec, cfg, device)
    out = Path(spec.out) if spec.out else RunDir(run).verify_dir.with_name("verify-clip")
    return publish_clip(out, rows, correct, _summary(data, spec, device, time.time() - start))


def load(run, cfg, spec) -> ClipData:
    from datapruner.verify import clip_data
    from datapruner.verify.splits import holdout_mask

    table, img, txt = clip_data.run_table(run)
    labels = table.column("label").to_numpy().astype(np.int64)
    size = image_size(spec.clip_model)
    test_mask = holdout_mask(labels, spec.test_fraction, cfg.seed) if spec.test_src is None else np.zeros(len(labels), bool)
    rest = np.flatnonzero(~test_mask)
    in_val = holdout_mask(labels[rest], spec.val_fraction, cfg.seed + 1)
    train_rows, val_rows = rest[~in_val], rest[in_val]
    pairs = clip_data.run_pairs(run, table, size, spec.clip_model)
    train, dropped = pairs.take(train_rows), 0
    if spec.test_src is None:
        test = pairs.take(np.flatnonzero(test_mask))
    else:
        test, dropped = clip_data.test_pairs(spec.test_src, size, spec.clip_model, cfg.allow_pipe, train)
    log.info("verify --task clip: %d training, %d validation and %d held-out pairs%s", len(train_rows),
             len(val_rows), len(test), f" ({dropped} held-out copies of training images left out)" if dropped else "")
    return ClipData(train, pairs.take(val_rows), test, table.take(train_rows), img[train_rows], txt[train_rows], dropped)


def image_size(model_name: str) -> int:
    import open_clip

    from datapruner.embed.catalog import MODEL_CONFIGS

    open_clip.add_model_config(MODEL_CONFIGS)
    size = open_clip.get_model_config(model_name)["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def kept_subsets(data: ClipData, spec, cfg) -> dict:
    """{(method, fraction, seed): kept training-row indices}, the pool scored afresh per seed."""
    from datapruner.verify.clip_methods import kept_rows, pool_table

    out = {}
    for seed in spec.seeds:
        table = pool_table(data.table, data.img, data.txt, cfg, seed)
        for method in spec.methods:
            for fraction in spec.fractions:
                out[(method, fraction, seed)] = kept_rows(table, method, fraction, cfg, seed)
    return out


def schedule(spec, n_train: int, alpha: float = 0.0) -> ClipSchedule:
    """The same samples seen for every arm: `steps` batches, else `epochs` passes over the full pool."""
    seen = spec.steps * spec.batch_size if spec.steps else spec.epochs * n_train
    return ClipSchedule(samples_seen=seen, batch_size=spec.batch_size, lr=spec.lr, warmup_frac=spec.warmup_frac,
                        alpha=alpha)


def arm_list(spec) -> list[tuple]:
    """(method, fraction, alpha) of every arm but the full pool's: alpha 0 (no KD) and each KD weight > 0."""
    alphas = [0.0, *sorted({float(a) for a in spec.kd_alphas if a != "auto" and float(a) > 0})]
    return [(m, f, a) for m in spec.methods for f in spec.fractions if f < 1.0 for a in alphas]


def train_arms(data: ClipData, arms: dict, spec, cfg, device) -> tuple[list[dict], dict]:
    """The rows of every arm and seed, and {student id: {metric: per-sample correctness}}."""
    from datapruner.verify.study import usable_cores
    from datapruner.verify.trainer import forked_map

    workers = 1 if device.type == "cuda" else (spec.workers or usable_cores())
    teach = lambda seed: _fit(data, arms, spec, device, ("random", 1.0, 0.0, seed), None)  # noqa: E731
    teachers = dict(zip(spec.seeds, forked_map(teach, list(spec.seeds), workers)))
    cells = [(m, f, a, seed) for seed in spec.seeds for m, f, a in arm_list(spec)]
    fit = lambda cell: _fit(data, arms, spec, device, cell, teachers[cell[3]]["state"] if cell[2] > 0 else None)  # noqa: E731
    results = [*teachers.values(), *forked_map(fit, cells, workers)]
    rows, correct = [], {}
    for i, result in enumerate(results):
        correct[i] = result.pop("correct")
        result.pop("state")
        rows.append({**result, "student_id": i})
    return full_rows(rows, spec.methods), correct


def full_rows(rows: list[dict], methods) -> list[dict]:
    """The full-pool student stands for every method at fraction 1.0 (the same data): one row per method."""
    full = [r for r in rows if r["fraction"] >= 1.0]
    return [r for r in rows if r["fraction"] < 1.0] + [{**r, "method": m} for r in full for m in methods]


def _fit(data: ClipData, arms: dict, spec, device, cell: tuple, teacher_state) -> dict:
    """Train and evaluate one arm's CLIP; the full pool's also returns its weights (the seed's KD teacher)."""
    import open_clip

    from datapruner.verify.clip_data import class_prompts
    from datapruner.verify.clip_eval import evaluate
    from datapruner.verify.clip_model import new_clip, train_clip
    from datapruner.verify.subsets import label_distance

    method, fraction, alpha, seed = cell
    index = arms[(method, fraction, seed)] if fraction < 1.0 else np.arange(len(data.train))
    model = new_clip(spec.clip_model, seed, device)
    teacher = _teacher(spec.clip_model, teacher_state, device) if teacher_state is not None else None
    kept = data.train.take(index)
    info = train_clip(model, kept.images, kept.tokens, schedule(spec, len(data.train), alpha), seed,
                      (data.val.images, data.val.tokens), teacher)
    correct = evaluate(model, data.test, class_prompts(data.train.labels, data.train.captions),
                       open_clip.get_tokenizer(spec.clip_model))
    tv, present = label_distance(data.train.labels[index], data.train.labels)
    row = {"task": "clip", "budget_mode": BUDGET, "method": method, "fraction": fraction, "kept": int(len(index)),
           "pool_size": len(data.train), "kd": alpha > 0, "alpha": alpha, "seed": seed, **info,
           **{m: round(float(v.mean()), 5) for m, v in correct.items()}, "label_tv": round(tv, 5),
           "classes_present": present, "model": spec.clip_model}
    log.info("verify --task clip: %s at %g (alpha %g, seed %d): zero-shot %.3f, i2t R@1 %.3f (%.1fs)", method,
             fraction, alpha, seed, row["zero_shot"], row["i2t_r1"], info["train_seconds"])
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()} if fraction >= 1.0 else None
    return {**row, "correct": correct, "state": state}


def _teacher(model_name: str, state: dict, device):
    from datapruner.verify.clip_model import new_clip

    teacher = new_clip(model_name, 0, device)
    teacher.load_state_dict(state)
    return teacher.eval().requires_grad_(False)


def _summary(data: ClipData, spec, device, seconds: float) -> dict:
    from dataclasses import fields

    return {"task": "clip", "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
            "held_out_copies_dropped": data.dropped_test_copies, "device": str(device), "seconds": round(seconds, 1),
            "spec": {f.name: getattr(spec, f.name) for f in fields(spec)}}


def publish_clip(out: Path, rows: list[dict], correct: dict, summary: dict) -> dict:
    from datapruner.verify.clip_verdicts import publish

    return publish(out, rows, correct, summary)
