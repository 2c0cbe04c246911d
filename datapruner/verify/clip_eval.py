"""verify --task clip's evaluation of one trained CLIP on the held-out pairs, per sample (the paired tests add
the test-set term from it): zero-shot classification with one class-name prompt per class, and image→text /
text→image recall@1 and @5 among the held-out pairs.

A retrieved pair counts as a hit when its caption is the same text as the query's own: captions made from
labels repeat, and any copy of the right caption is a right answer (with distinct captions this is the usual
recall@k).
"""

from __future__ import annotations

import numpy as np

KS = (1, 5)
METRICS = ("zero_shot", "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5")


def evaluate(model, test, prompts: dict[int, str], tokenizer) -> dict[str, np.ndarray]:
    """{metric: bool per held-out sample} for METRICS."""
    from datapruner.verify.clip_model import encode, encode_texts

    img, txt = encode(model, test.images, test.tokens)
    classes = sorted(prompts)
    tokens = tokenizer([prompts[c] for c in classes])
    class_txt = encode_texts(model, tokens)
    predicted = np.asarray(classes)[(img @ class_txt.T).argmax(dim=1).numpy()]
    out = {"zero_shot": predicted == test.labels}
    same = _same_caption(test.captions)
    sim = (img @ txt.T).numpy()
    for k in KS:
        out[f"i2t_r{k}"] = _hits(sim, same, k)
        out[f"t2i_r{k}"] = _hits(sim.T, same.T, k)
    return out


def _same_caption(captions: list[str]) -> np.ndarray:
    """(n, n) bool: pair j's caption is the same text as pair i's."""
    _, code = np.unique(np.asarray(captions, dtype=object).astype(str), return_inverse=True)
    return code[:, None] == code[None, :]


def _hits(sim: np.ndarray, same: np.ndarray, k: int) -> np.ndarray:
    """Per query row: one of its k most similar items (ties: the lower index) is a right answer."""
    top = np.argsort(-sim, axis=1, kind="stable")[:, :min(k, sim.shape[1])]
    return np.take_along_axis(same, top, axis=1).any(axis=1)
