"""The built-in filters: each reads one metric's score column and removes alive rows.

Filter options (one mode each; fractions are of the rows still alive when the filter runs, and
are removed exactly, ties broken by (shard, key)):
- semdedup:  eps=E       remove rows whose duplicate score (max cosine similarity to an earlier row
                         of their cluster, datapruner/metrics/semdedup.py) exceeds 1 − E
             fraction=F  remove the F share with the highest duplicate score (the ε this implies is logged)
- clip_score: threshold=T remove rows with image-text cosine below T;  fraction=F  the lowest F share
- el2n_probe: offset=F   remove the F share with the highest probe EL2N (the hardest, likely mislabelled)
- el2n_student: offset=F the same on verify's student EL2N column (score_el2n_student, written by verify only)
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.select.policy import tiebreak_position

log = logging.getLogger(__name__)


# each built-in filter takes exactly one of its modes, a number in the mode's range
MODES = {
    "semdedup": {"eps": (0.0, 1.0), "fraction": (0.0, 1.0)},
    "clip_score": {"threshold": (-1.0, 1.0), "fraction": (0.0, 1.0)},
    "el2n_probe": {"offset": (0.0, 1.0)},
    "el2n_student": {"offset": (0.0, 1.0)},
}


def one_mode(name: str, options: dict) -> tuple[str, float]:
    """The (mode, value) a built-in filter's options give; validate.py calls it before a run starts."""
    modes = MODES[name]
    given = [m for m in modes if m in options]
    if set(options) - set(modes) or len(given) != 1:
        raise DataprunerError(f"filter {name} takes exactly one of {', '.join(modes)}; got "
                              f"{', '.join(f'{k}={v}' for k, v in options.items()) or 'none'}")
    mode, raw = given[0], options[given[0]]
    low, high = modes[mode]
    value = None if isinstance(raw, bool) else _number(raw)
    if value is None or not low <= value <= high:
        raise DataprunerError(f"filter {name}: {mode} must be a number in [{low:g}, {high:g}], got {raw}")
    return mode, value


def _number(raw) -> float | None:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def score_column(table: pa.Table, metric: str) -> np.ndarray:
    column = f"score_{metric}"
    if column not in table.column_names:
        raise DataprunerError(f"the scores have no {column!r}: rerun `datapruner score` with --filter {metric}:...")
    return table.column(column).to_numpy().astype(np.float64)


def highest_alive(table: pa.Table, alive: np.ndarray, values: np.ndarray, fraction: float) -> np.ndarray:
    """A mask of the round(fraction · alive) alive rows with the highest values, ties by (shard, key)."""
    count = round(fraction * int(alive.sum()))
    order = np.lexsort((tiebreak_position(table), -values))
    order = order[alive[order]]
    removed = np.zeros(len(alive), bool)
    removed[order[:count]] = True
    return removed


def semdedup_filter(table: pa.Table, alive: np.ndarray, options: dict, cfg: Config) -> np.ndarray:
    mode, value = one_mode("semdedup", options)
    dup = score_column(table, "semdedup")
    if mode == "eps":
        return alive & (dup > 1.0 - value)
    removed = highest_alive(table, alive, dup, value)
    if removed.any():
        log.info("semdedup: removing %d rows = eps %.4g (similarity > %.4g)", removed.sum(),
                 1.0 - dup[removed].min(), dup[removed].min())
    return removed


def clip_score_filter(table: pa.Table, alive: np.ndarray, options: dict, cfg: Config) -> np.ndarray:
    mode, value = one_mode("clip_score", options)
    score = score_column(table, "clip_score")
    if mode == "threshold":
        return alive & (score < value)
    return highest_alive(table, alive, -score, value)


def el2n_offset_filter(table: pa.Table, alive: np.ndarray, options: dict, cfg: Config) -> np.ndarray:
    _, value = one_mode("el2n_probe", options)
    return highest_alive(table, alive, score_column(table, "el2n_probe"), value)


def student_el2n_offset_filter(table: pa.Table, alive: np.ndarray, options: dict, cfg: Config) -> np.ndarray:
    _, value = one_mode("el2n_student", options)
    return highest_alive(table, alive, score_column(table, "el2n_student"), value)


def parse_filter(text: str, flag: str = "--filter") -> dict:
    """`name:key=value,key=value` (the CLI's --filter, --metric-option) → {"name": name, key: value};
    values parsed as YAML."""
    import yaml

    name, _, rest = text.partition(":")
    spec: dict = {"name": name.strip()}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataprunerError(f"{flag} {text!r}: expected name:key=value[,key=value], e.g. semdedup:eps=0.05")
        spec[key.strip()] = yaml.safe_load(value)
    if not spec["name"]:
        raise DataprunerError(f"{flag} {text!r} has no name before the colon")
    return spec
