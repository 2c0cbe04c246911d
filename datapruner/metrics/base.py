"""What a metric is: a per-part score (higher = harder), and for some a barrier fit before it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa

from datapruner.config import Config
from datapruner.embed.outputs import read_img_emb, read_text_emb, unit_rows
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir


@dataclass
class PartData:
    """Everything the score map step knows about one part; rows are in metadata order. The embeddings are
    read on first use (most metrics need only the assignment)."""

    run: RunDir
    part: str
    meta: pa.Table  # shard, key, offset, length, [uid, caption, label]
    cluster: np.ndarray  # (n,) int32
    dist: np.ndarray  # (n,) float32, cosine distance to the nearest centroid
    centroids: np.ndarray  # (k, d) float32

    @cached_property
    def img_emb(self) -> np.ndarray:
        """(n, d) float32, renormalised from the stored float16 (embed/outputs.unit_rows)."""
        return unit_rows(read_img_emb(self.run, self.part))

    @cached_property
    def text_emb(self) -> np.ndarray | None:
        """The same for captions, zero rows where a sample has none; None without text embeddings."""
        text = read_text_emb(self.run, self.part)
        return None if text is None else unit_rows(text)


class Metric:
    """Subclass, set `name` (and `defaults`, its options), implement `score`.

    `score` runs per part, possibly in another process, and must be a pure function of the part,
    the options and (for a FittedMetric) the state its fit stored.
    """

    name: str = ""
    defaults: dict = {}
    rules: dict = {}  # option -> its choices, or ("int" | "float" | "float>", low, high); None: unbounded
    fitted: bool = False
    fit_options: tuple[str, ...] | None = None  # the options the fitted state depends on (None: all)

    def options(self, cfg: Config) -> dict:
        """defaults, overridden by cfg.metric_options[name]; unknown option names are an error."""
        given = cfg.options_for(self.name)
        unknown = set(given) - set(self.defaults)
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise DataprunerError(f"unknown option(s) for metric {self.name}: {', '.join(sorted(unknown))}; "
                                  f"known: {known}")
        return {**self.defaults, **given}

    def check_options(self, options: dict) -> None:
        """Refuse option values outside `rules` (validate.py calls this before a run starts)."""
        for key, value in options.items():
            rule = self.rules.get(key)
            if rule is not None and not _obeys(value, rule):
                raise DataprunerError(f"{key} must be {_describe(rule)}, got {value}")

    def token_options(self, cfg: Config) -> dict:
        options = self.options(cfg)
        return options if self.fit_options is None else {k: options[k] for k in self.fit_options}

    def score(self, part: PartData, cfg: Config) -> np.ndarray:
        raise NotImplementedError


class FittedMetric(Metric):
    """A metric with global state: `fit` runs once on the driver (the `fit` barrier step) and stores
    what it learns under `state_dir(run)`; the step loop decides when it is fresh."""

    fitted = True

    def state_dir(self, run: RunDir) -> Path:
        return run.metric_dir(self.name)

    def fit(self, run: RunDir, cfg: Config, options: dict) -> dict | None:
        raise NotImplementedError


NUMERIC = ("int", "float", "float>")  # float>: strictly above low


def _obeys(value, rule: tuple) -> bool:
    if rule[0] not in NUMERIC:
        return value in rule
    kind, low, high = rule
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    if kind == "int" and not float(value).is_integer():
        return False
    above = value > low if kind == "float>" else value >= low
    return (low is None or above) and (high is None or value <= high)


def _describe(rule: tuple) -> str:
    if rule[0] not in NUMERIC:
        return "one of " + ", ".join(rule)
    kind, low, high = rule
    what = "an integer" if kind == "int" else "a number"
    if high is not None:
        return f"{what} in [{low}, {high}]"
    return f"{what} {'>' if kind == 'float>' else '>='} {low}"
