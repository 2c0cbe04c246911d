"""Paul et al. 2021 (EL2N) on frozen embeddings: E over S probes of ||softmax(f(x)) − onehot(y)||₂.

Labels: the metadata `label` column when every sample has one, otherwise the k-means cluster ids
(option labels: auto | data | cluster). The fit is a barrier that streams the parts chunk by chunk
(out of core: memory is one chunk plus the probes) for a few epochs, and saves the probe weights,
the classes and each part's label ids under RUN/metrics/el2n/. Scoring a part is one forward pass.
To drop the hardest share (likely label noise, Paul et al.'s offset) add the filter `el2n:offset=F`.
Options (metric_options.el2n): models (S, 4), epochs (3), hidden (0 = linear; > 0: one ReLU layer),
lr (Adam, 1e-2), batch_size (1024), chunk_rows (65536), labels (auto).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import pyarrow.parquet as pq

from datapruner.cluster.assign import part_assignment
from datapruner.devices import resolve_device
from datapruner.embed.outputs import as_float32, read_img_emb
from datapruner.errors import DataprunerError
from datapruner.io.atomic import atomic_path, save_npy
from datapruner.io.rundir import RunDir
from datapruner.metrics.base import FittedMetric, PartData
from datapruner.metrics.probes import el2n_from_logits, init_probes, probe_logits, train_on_chunk

log = logging.getLogger(__name__)
DEFAULTS = {"models": 4, "epochs": 3, "hidden": 0, "lr": 1e-2, "batch_size": 1024, "chunk_rows": 65536,
            "labels": "auto"}


def torch_device(device: str):
    """Where the probes train: --device by the one rule of datapruner/devices.py."""
    return resolve_device(device)


def data_labels(run: RunDir) -> list[np.ndarray] | None:
    """Every part's `label` column, or None when some sample has no label."""
    out = []
    for part in run.part_ids():
        table = pq.read_table(run.metadata(part))
        if "label" not in table.column_names or table.column("label").null_count:
            return None
        out.append(table.column("label").to_numpy().astype(np.int64))
    return out


def cluster_labels(run: RunDir) -> list[np.ndarray]:
    return [part_assignment(run, part)[0].astype(np.int64) for part in run.part_ids()]


def write_labels(run: RunDir, mode: str) -> int:
    """Save each part's class ids (0..C-1) and the class values; return C."""
    if mode not in ("auto", "data", "cluster"):
        raise DataprunerError(f"el2n labels must be auto, data or cluster, got {mode!r}")
    labels = data_labels(run) if mode != "cluster" else None
    if labels is None and mode == "data":
        raise DataprunerError("el2n labels=data, but some samples have no label (metadata column 'label')")
    source = "data" if labels is not None else "cluster"
    if labels is None:
        labels = cluster_labels(run)
        classes = np.arange(len(np.load(run.centroids)))
    else:
        classes = np.unique(np.concatenate(labels)) if labels else np.zeros(0, np.int64)
    directory = run.metric_dir("el2n_probe")
    for part, values in zip(run.part_ids(), labels):
        save_npy(directory / f"labels/part-{part}.npy", np.searchsorted(classes, values).astype(np.int32))
    save_npy(directory / "classes.npy", classes)
    log.info("el2n: %d classes from %s labels", len(classes), source)
    return max(1, len(classes))


def stream_chunks(run: RunDir, rng: np.random.Generator, chunk_rows: int):
    """(embeddings float32, class ids) chunks over the parts, in a seeded random part and chunk order."""
    directory = run.metric_dir("el2n_probe")
    for p in rng.permutation(len(run.part_ids())):
        part = run.part_ids()[p]
        emb, labels = read_img_emb(run, part), np.load(directory / f"labels/part-{part}.npy", mmap_mode="r")
        for lo in rng.permutation(np.arange(0, len(emb), chunk_rows)):
            yield as_float32(emb[lo:lo + chunk_rows]), np.asarray(labels[lo:lo + chunk_rows], np.int64)


def train_ensemble(run: RunDir, classes: int, options: dict, seed: int, device) -> dict:
    import torch

    dim = read_img_emb(run, run.part_ids()[0]).shape[1]
    params = {k: v.to(device).requires_grad_() for k, v in
              init_probes(int(options["models"]), dim, classes, int(options["hidden"]), seed).items()}
    optimizer = torch.optim.Adam(params.values(), lr=float(options["lr"]))
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    for epoch in range(int(options["epochs"])):
        losses = [train_on_chunk(params, optimizer, torch.from_numpy(x).to(device), torch.from_numpy(y).to(device),
                                 int(options["batch_size"]), gen)
                  for x, y in stream_chunks(run, rng, int(options["chunk_rows"]))]
        log.info("el2n: epoch %d, mean loss %.4f", epoch + 1, float(np.mean(losses)) if losses else float("nan"))
    return {k: v.detach().cpu() for k, v in params.items()}


def probes_path(run: RunDir):
    return run.metric_dir("el2n_probe") / "probes.pt"


@lru_cache(maxsize=4)
def load_probes(path: str, mtime_ns: int) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def el2n_scores(params: dict, x: np.ndarray, labels: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """The EL2N score of every row of x (n, d) against class ids `labels`, averaged over the probes."""
    import torch

    out = np.empty(len(x), np.float32)
    with torch.no_grad():
        for lo in range(0, len(x), chunk):
            xb = torch.from_numpy(as_float32(x[lo:lo + chunk]))
            yb = torch.from_numpy(np.asarray(labels[lo:lo + chunk], np.int64))
            out[lo:lo + chunk] = el2n_from_logits(probe_logits(params, xb), yb).numpy()
    return out


class EL2N(FittedMetric):
    name = "el2n_probe"
    defaults = DEFAULTS
    rules = {"models": ("int", 1, None), "epochs": ("int", 1, None), "hidden": ("int", 0, None),
             "lr": ("float>", 0, None), "batch_size": ("int", 1, None), "chunk_rows": ("int", 1, None),
             "labels": ("auto", "data", "cluster")}

    def fit(self, run: RunDir, cfg, options: dict) -> dict:
        import torch

        classes = write_labels(run, options["labels"])
        params = train_ensemble(run, classes, options, cfg.seed, torch_device(cfg.device))
        with atomic_path(probes_path(run)) as tmp:
            torch.save(params, tmp)
        return {"classes": classes}

    def score(self, part: PartData, cfg) -> np.ndarray:
        path = probes_path(part.run)
        params = load_probes(str(path), path.stat().st_mtime_ns)
        labels = np.load(self.state_dir(part.run) / f"labels/part-{part.part}.npy")
        return el2n_scores(params, part.img_emb, labels)
