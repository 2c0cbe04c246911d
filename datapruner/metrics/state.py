"""Fitted metric state under RUN/metrics/<name>/, reused while its inputs are unchanged.

A fit's token hashes the centroids, the per-part row counts, the metric's options and the seed;
the completion marker `_done/metrics/<name>` holds it, and it is also the metric's state token.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


from datapruner.cluster.assign import centroids_token
from datapruner.config import Config
from datapruner.embed.outputs import read_img_emb
from datapruner.io.rundir import RunDir

STEP = "metrics"


def metric_options(cfg: Config, name: str, defaults: dict) -> dict:
    """defaults, overridden by cfg.metric_options[name]; unknown option names are an error."""
    given = cfg.options_for(name)
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown option(s) for metric {name}: {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(defaults))}")
    return {**defaults, **given}


def inputs_token(run: RunDir, cfg: Config, name: str, options: dict) -> str:
    counts = [int(read_img_emb(run, p).shape[0]) for p in run.part_ids()]
    text = json.dumps({"centroids": centroids_token(run), "counts": counts,
                       "options": options, "seed": cfg.seed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def state_dir(run: RunDir, name: str) -> Path:
    return run / f"{STEP}/{name}"


def is_fitted(run: RunDir, name: str, token: str) -> bool:
    return run.is_done(STEP, name, token)


def mark_fitted(run: RunDir, name: str, token: str) -> None:
    run.mark_done(STEP, name, token)


def fitted_token(run: RunDir, name: str) -> str:
    marker = run / f"_done/{STEP}/{name}"
    return marker.read_text() if marker.exists() else ""
