"""Tensors, teachers and students of one study: every distinct (subset, budget, alpha, seed) is trained once.

Students run in `workers` forked processes, one torch thread each, so a study uses every core and its numbers do
not depend on how many workers there were: each student's initialisation and batch order follow its seed alone.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from datapruner.verify.data import Split
from datapruner.verify.train import TrainSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One student: rows of the training data, its budget (alpha included), seed, and the teacher it distils (its
    pool's, or (pool, seed) when teachers are resampled per seed)."""

    index: np.ndarray
    spec: TrainSpec
    seed: int
    pool: float | tuple

    def key(self) -> tuple:
        digest = hashlib.sha1(np.ascontiguousarray(self.index, np.int64).tobytes()).hexdigest()
        return (digest, self.spec, self.seed, self.pool if self.spec.alpha > 0 else None)


def input_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training-set mean and std per feature (embeddings) or per channel (images), for standardising inputs."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    mean = x.mean(axis=axes, keepdims=True)[0]
    std = x.std(axis=axes, keepdims=True)[0]
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


class Trainer:
    """Standardised tensors of the train / validation / test splits (labels as class ids of the training data)."""

    def __init__(self, student: str, width: int, train: Split, val: Split, test: Split):
        import torch

        self.student, self.width, self.classes = student, width, np.unique(train.y)
        mean, std = input_stats(train.x)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray((a - mean) / std, np.float32))  # noqa: E731
        self.x, self.y = as_tensor(train.x), torch.from_numpy(self.class_ids(train.y))
        self.val = (as_tensor(val.x), torch.from_numpy(self.class_ids(val.y)))
        self.x_test, self.y_test = as_tensor(test.x), torch.from_numpy(self.class_ids(test.y))
        self.unseen_test_labels = _unseen(test.y, self.classes)
        self.teachers: dict[float, dict] = {}
        self.memo: dict[tuple, dict] = _TRAINED.setdefault(self._digest(student, width), {})
        self.study_keys: list[tuple] = []  # the students of the last study, in row order

    def _digest(self, student: str, width: int) -> str:
        """What a student's result depends on beyond its Job: the architecture and every tensor."""
        h = hashlib.sha1(f"{student}/{width}".encode())
        for t in (self.x, self.y, *self.val, self.x_test, self.y_test):
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def class_ids(self, labels: np.ndarray) -> np.ndarray:
        """Class ids 0..C-1; a label the training data never has is -1 (always an error)."""
        pos = np.searchsorted(self.classes, labels).clip(0, len(self.classes) - 1)
        return np.where(self.classes[pos] == labels, pos, -1).astype(np.int64)

    def new_model(self, seed: int, width: int | None = None):
        import torch

        from datapruner.verify.students import make_student

        torch.manual_seed(seed)
        return make_student(self.student, tuple(self.x.shape[1:]), len(self.classes), width or self.width)

    def train_teacher(self, pool: float | tuple, index: np.ndarray, spec: TrainSpec, seed: int, width: int) -> dict:
        """The KD teacher of a pool: trained on all of the pool to convergence; its logits over every training row."""
        from datapruner.verify.train import accuracy, predict_logits, train_student

        start = time.time()
        model = self.new_model(seed, width)
        idx = _tensor(index)
        info = train_student(model, self.x[idx], self.y[idx], spec, seed, val=self.val)
        acc = accuracy(model, self.x_test, self.y_test)
        log.info("teacher %s: accuracy %.4f, %d steps, converged %s (%.1fs)", pool, acc, info["steps"],
                 info["converged"], time.time() - start)
        self.teachers[pool] = {"logits": predict_logits(model, self.x), "accuracy": acc, "steps": info["steps"],
                               "converged": info["converged"], "seconds": round(time.time() - start, 2)}
        return self.teachers[pool]

    def fit(self, job: Job) -> dict:
        """Train one student; its test accuracy, validation numbers, steps and whether it converged."""
        from datapruner.verify.train import predict_logits, train_student

        start = time.time()
        model = self.new_model(job.seed)
        idx = _tensor(job.index)
        logits = self.teachers[job.pool]["logits"][idx] if job.spec.alpha > 0 else None
        info = train_student(model, self.x[idx], self.y[idx], job.spec, job.seed, logits, val=self.val)
        right = (predict_logits(model, self.x_test).argmax(1) == self.y_test).numpy()
        info.update(accuracy=float(right.mean()), test_correct=np.packbits(right), seconds=round(time.time() - start, 2))
        return info

    def test_correct(self, keys: list[tuple]) -> np.ndarray:
        """(students, test samples) bool: which test samples each student (memo key) gets right."""
        n = len(self.y_test)
        return np.stack([np.unpackbits(self.memo[k]["test_correct"])[:n].astype(bool) for k in keys])

    def train_all(self, jobs: list[Job], workers: int, progress: bool = True) -> None:
        """Fill the memo for every job not trained yet."""
        todo = list({job.key(): job for job in jobs if job.key() not in self.memo}.items())
        start = time.time()
        for done, (key, info) in enumerate(self._results(todo, workers), 1):
            self.memo[key] = info
            if progress and (done % 50 == 0 or done == len(todo)):
                log.info("verify: %d/%d students trained (%.0fs)", done, len(todo), time.time() - start)

    def _results(self, todo: list, workers: int):
        keys = [key for key, _ in todo]
        yield from zip(keys, forked_map(self.fit, [job for _, job in todo], workers))


_TASK = None  # the function the forked workers inherit
_TRAINED: dict[str, dict] = {}  # per data digest: the students trained in this process (later studies reuse them)


def forked_map(fn, items: list, workers: int):
    """fn over items, in `workers` forked processes of one torch thread each (in this process, also on one
    thread, when workers <= 1): results in order, and the same numbers either way."""
    global _TASK
    import torch

    if workers <= 1 or len(items) < 2:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield from map(fn, items)
        finally:
            torch.set_num_threads(before)
        return
    _TASK = fn
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_one_thread) as pool:
            yield from pool.map(_run_task, items, chunksize=max(1, min(4, len(items) // (4 * workers))))
    finally:
        _TASK = None


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _run_task(item):
    return _TASK(item)


def _tensor(index: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(index, np.int64))


def _unseen(labels: np.ndarray, classes: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts) if v not in set(classes.tolist())}
