"""Embedding rows no similarity can be taken on: a NaN or infinite component (a model's float16 overflow, a
corrupt file), or a zero vector (written for a failed download). Their samples are invalid, category
"bad embedding", before a part is written, so no such row reaches k-means, a metric, a filter, the budget
or the report, whether it came from the model or from --embeddings DIR.

A text row is bad the same way, with one exception: a zero text row is how a sample without a caption is
stored (clip_score gives it 0), so a zero text row is bad only for a sample that has a caption.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from datapruner.reasons import reason

CATEGORY = "bad embedding"


def without_bad_rows(img: np.ndarray, txt: np.ndarray | None, meta: pa.Table):
    """(img, txt, meta) without the bad rows, and an errors/ row (key, stage, reason) for each of them."""
    found = {**row_faults(txt, "text", _uncaptioned(meta, txt)), **row_faults(img, "image")}
    if not found:
        return img, txt, meta, []
    keep = np.ones(len(img), bool)
    keep[list(found)] = False
    keys = meta.column("key").to_pylist()
    errors = [{"key": keys[i], "stage": "embed", "reason": reason(CATEGORY, found[i])} for i in sorted(found)]
    return img[keep], None if txt is None else txt[keep], meta.filter(pa.array(keep)), errors


def row_faults(x: np.ndarray | None, kind: str, may_be_zero: np.ndarray | None = None) -> dict[int, str]:
    """{row: what is wrong with it} for the rows of x that are not finite, or zero (unless may_be_zero)."""
    if x is None or not len(x):
        return {}
    x = np.asarray(x)
    not_finite = (~np.isfinite(x)).sum(axis=1)
    zero = (not_finite == 0) & ~np.any(x != 0, axis=1)
    if may_be_zero is not None:
        zero &= ~may_be_zero
    found = {int(i): f"its {kind} embedding has {not_finite[i]} NaN or infinite components of {x.shape[1]}"
             for i in np.flatnonzero(not_finite)}
    found.update({int(i): f"its {kind} embedding is a zero vector" for i in np.flatnonzero(zero)})
    return found


def _uncaptioned(meta: pa.Table, txt: np.ndarray | None) -> np.ndarray | None:
    if txt is None:
        return None
    if "caption" not in meta.column_names:
        return np.ones(len(txt), bool)
    return pc.is_null(meta.column("caption")).to_numpy(zero_copy_only=False)
