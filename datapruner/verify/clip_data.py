"""verify --task clip's data: image-caption pairs with labels, from the run's shards (train, validation) and a
held-out set (a stratified share of the run, or --test-src shards) that no training pool contains.

Images are decoded once at the model's input size and normalised with open_clip's mean and std; captions are
tokenized once with the model's open_clip tokenizer. The pipeline's stored embeddings (image and text) of the
training rows are what the pruning methods score, as `datapruner score` would.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class Pairs:
    """Image-caption pairs: ids (shard, key, label, caption), images (n, 3, s, s) and tokens (torch tensors)."""

    ids: pa.Table
    images: object
    tokens: object

    def __len__(self) -> int:
        return self.ids.num_rows

    @property
    def labels(self) -> np.ndarray:
        return self.ids.column("label").to_numpy().astype(np.int64)

    @property
    def captions(self) -> list[str]:
        return self.ids.column("caption").to_pylist()

    def take(self, index: np.ndarray) -> "Pairs":
        import torch

        rows = torch.from_numpy(np.ascontiguousarray(index, np.int64))
        return Pairs(self.ids.take(index), self.images[rows], self.tokens[rows])


def run_table(run: str | Path) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """(shard, key, label, caption) of every embedded sample, their image and text embeddings (float32)."""
    from datapruner.embed.outputs import read_img_emb, read_metadata, read_text_emb
    from datapruner.verify.data import labels_of

    rd = RunDir(run)
    parts = list(zip(rd.part_ids(), rd.shards()))
    if not parts:
        raise DataprunerError(f"{run} has no embeddings: run `datapruner embed` first (or pass --src)")
    text = [read_text_emb(rd, p) for p, _ in parts]
    if any(t is None for t in text):
        raise DataprunerError(f"{run} has no text embeddings: verify --task clip scores image-caption pairs "
                              "(embed with captions: a txt member or a json caption field)")
    metas = [read_metadata(rd, p, s) for p, s in parts]
    if any("caption" not in m.column_names for m in metas):
        raise DataprunerError(f"{run}: the metadata has no caption column (verify --task clip trains on captions)")
    table = pa.concat_tables([m.select(["shard", "key", "label", "caption"]) for m in metas], promote_options="default")
    labels_of(table, str(run))
    uncaptioned = table.column("caption").null_count
    if uncaptioned:
        raise DataprunerError(f"{run}: {uncaptioned} samples have no caption; verify --task clip needs one on every sample")
    img = np.concatenate([np.asarray(read_img_emb(rd, p), np.float32) for p, _ in parts])
    return table, img, np.concatenate([np.asarray(t, np.float32) for t in text])


def shard_pairs(shards: list[str], size: int, wanted: set | None = None) -> dict:
    """{(shard, key): (RGB image float32 (3, size, size) in [0, 1], label, caption)} of the usable samples."""
    from datapruner.embed.decode import UnusableSample, image_bytes, text_fields
    from datapruner.verify.data import image_array, wanted_samples

    out = {}
    for shard, sample in wanted_samples(shards, wanted):
        try:
            fields = text_fields(sample.members, "caption", "label")
            out[(shard, sample.key)] = (image_array(image_bytes(sample.members), size, 3), fields["label"],
                                        fields["caption"])
        except UnusableSample:
            continue
    return out


def to_pairs(found: dict, ids: list[tuple[str, str]], model_name: str) -> Pairs:
    """Pairs in the order of `ids`, their images normalised and captions tokenized as open_clip does."""
    import open_clip
    import torch

    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    images = (torch.from_numpy(np.stack([found[i][0] for i in ids])) - mean) / std
    captions = [found[i][2] for i in ids]
    table = pa.table({"shard": [s for s, _ in ids], "key": [k for _, k in ids],
                      "label": pa.array([found[i][1] for i in ids], pa.int64()), "caption": captions})
    return Pairs(table, images.contiguous(), open_clip.get_tokenizer(model_name)(captions))


def run_pairs(run: str | Path, table: pa.Table, size: int, model_name: str) -> Pairs:
    """The run's samples of `table` decoded from its shards, in table order (every one must decode)."""
    ids = list(zip(table.column("shard").to_pylist(), table.column("key").to_pylist()))
    found = shard_pairs(RunDir(run).shards(), size, set(ids))
    missing = [i for i in ids if i not in found]
    if missing:
        raise DataprunerError(f"{len(missing)} embedded samples could not be decoded from their shards, e.g. {missing[0]}")
    return to_pairs(found, ids, model_name)


def test_pairs(test_src: str, size: int, model_name: str, allow_pipe: bool, train: Pairs) -> tuple[Pairs, int]:
    """The labelled, captioned pairs of `test_src` shards, less any whose image is one of `train`'s
    (held-out pairs are in no training pool); (pairs, how many were dropped as training copies)."""
    from datapruner.io.shards import list_shards

    found = {i: v for i, v in shard_pairs(list_shards(test_src, allow_pipe=allow_pipe), size).items()
             if v[1] is not None and v[2] is not None}
    seen = {_image_hash(x) for x in train.images.numpy()}
    mean_std = _normalised(np.stack([v[0] for v in found.values()])) if found else np.empty(0)
    kept = [i for i, x in zip(found, mean_std) if _image_hash(x) not in seen]
    if not kept:
        raise DataprunerError(f"--test-src {test_src}: no labelled, captioned pair that is not also a training image")
    return to_pairs(found, kept, model_name), len(found) - len(kept)


def _normalised(images: np.ndarray) -> np.ndarray:
    import open_clip

    mean = np.asarray(open_clip.OPENAI_DATASET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(open_clip.OPENAI_DATASET_STD, np.float32).reshape(1, 3, 1, 1)
    return ((images - mean) / std).astype(np.float32)


def _image_hash(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x, np.float32).round(4).tobytes()).hexdigest()


def class_prompts(labels: np.ndarray, captions: list[str]) -> dict[int, str]:
    """One zero-shot prompt per class: "a photo of a NAME", NAME the class's most common training caption with
    a leading "a photo of a(n)" taken off (captions made from labels are exactly that)."""
    from collections import Counter

    prompts = {}
    for c in np.unique(labels):
        caption = Counter(captions[i] for i in np.flatnonzero(labels == c)).most_common(1)[0][0].strip()
        for prefix in ("a photo of an ", "a photo of a "):
            if caption.lower().startswith(prefix):
                caption = caption[len(prefix):]
                break
        prompts[int(c)] = f"a photo of a {caption}"
    return prompts
