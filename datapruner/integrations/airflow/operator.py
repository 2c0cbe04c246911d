"""DataprunerOperator: one datapruner.api step as an Airflow task.

Importing this module loads only Airflow and datapruner.config (yaml): torch, open_clip and faiss
are imported inside `execute`, when the task runs, never when the scheduler parses a DAG file.
A retried task resumes: the API skips every part whose completion marker matches its inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from datapruner.config import Config, load_config

log = logging.getLogger(__name__)

STEPS_READING_SOURCE = ("embed", "prune")
PARTITION = "partition"


def step_names() -> tuple[str, ...]:
    """The step table's names, plus `prune` (every step, end to end)."""
    from datapruner.steps import STEP_NAMES

    return (*STEP_NAMES, "prune")


class DataprunerOperator(BaseOperator):
    """Run one step of datapruner.api (the same functions the CLI calls) on a run directory.

    :param step: a step of the table (embed, cluster, assign, fit, score, select, plan, write, report:
        datapruner/steps.py), prune (all of them, end to end), or partition: split the map step `of`
        into at most `groups` groups of parts and return them (a list of lists) for
        ``.expand(parts=...)`` of mapped tasks.
    :param run_dir: the run directory (templated).
    :param src: source shards, e.g. ``s3://bucket/{00000..00999}.tar`` (templated; embed and prune only).
    :param keep: fraction of valid samples to keep (templated; a string is converted).
    :param metric: the metric that orders samples (templated).
    :param config_path: a YAML preset (templated); empty means the package defaults.
    :param overrides: further Config options, e.g. ``{"clusters": 100}`` (values templated).
    :param parts: for the map steps (embed, assign, score, write): only these parts (a mapped task's group).
    :param of: for partition: the map step to split.
    :param groups: for partition: how many groups at most (templated).
    :param progress: show tqdm bars in the task log.
    :return: a small XCom: the step, the run directory, output paths and counts (never per-cluster lists).
    """

    template_fields: Sequence[str] = ("run_dir", "src", "keep", "metric", "config_path", "overrides", "groups")
    template_ext: Sequence[str] = ()
    ui_color = "#d9ead3"

    def __init__(self, *, step: str, run_dir: str, src: str | None = None, keep: float | str | None = None,
                 metric: str | None = None, config_path: str | None = None, overrides: dict | None = None,
                 parts: list[int] | None = None, of: str | None = None, groups: int | str = 8,
                 progress: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_step(step, src, of)
        self.step = step
        self.run_dir = run_dir
        self.src = src
        self.keep = keep
        self.metric = metric
        self.config_path = config_path
        self.overrides = overrides or {}
        self.progress = progress
        self.parts = parts
        self.of = of
        self.groups = groups

    def execute(self, context: Any) -> dict | list:
        cfg = self.resolved_config()
        log.info("datapruner %s: run_dir=%s src=%s keep=%s metric=%s parts=%s", self.step, self.run_dir, self.src,
                 cfg.keep, cfg.metric, self.parts)
        if self.step == "partition":
            from datapruner import api

            return api.partition(self.of, self.run_dir, cfg, int(self.groups), self.src)
        summary = run_step(self.step, self.src, self.run_dir, cfg, self.progress, self.parts)
        result = xcom_summary(self.step, self.run_dir, summary)
        log.info("datapruner %s done: %s", self.step, result)
        return result

    def resolved_config(self) -> Config:
        """Package defaults, then the YAML file, then keep/metric/overrides (rendered templates)."""
        keep = None if self.keep in (None, "") else float(self.keep)
        return load_config(self.config_path or None, keep=keep, metric=self.metric or None, **self.overrides)


def _check_step(step: str, src: str | None, of: str | None = None) -> None:
    from datapruner.steps import MAP_STEPS

    if step == PARTITION:
        if of not in MAP_STEPS:
            raise ValueError(f"partition needs of= one of {', '.join(MAP_STEPS)}, got {of!r}")
        step = of
    if step not in step_names():
        raise ValueError(f"unknown datapruner step {step!r}: use one of partition, {', '.join(step_names())}")
    if step in STEPS_READING_SOURCE and not src:
        raise ValueError(f"datapruner step {step!r} needs src (the source shards)")


def run_step(step: str, src: str | None, run_dir: str, cfg: Config, progress: bool = False,
             parts: list[int] | None = None) -> dict:
    """The datapruner.api call for `step`; the heavy libraries load here."""
    from datapruner import api

    if step == "prune":
        return api.prune(src, run_dir, cfg.keep, cfg, progress=progress)
    return api.step(step, run_dir, cfg, src if step == "embed" else None, progress=progress, parts=parts)


def xcom_summary(step: str, run_dir: str, summary: dict) -> dict:
    """Counts and paths only: scalars and small dicts of them; lists (per-cluster arrays) are dropped."""
    root = Path(run_dir)
    return {
        "step": step,
        "run_dir": str(root),
        "outputs": step_outputs(step, root),
        "summary": scalars_only(summary),
    }


def step_outputs(step: str, root: Path) -> dict:
    """The folders and files the step writes, from the step table (its parts' recorded outputs)."""
    from datapruner.io.rundir import RunDir
    from datapruner.steps import STEP_NAMES, get_step

    run = RunDir(root)
    names = STEP_NAMES if step == "prune" else (step,)
    return {name: str(get_step(name).outputs(run, parts[0])[0].parent)
            for name in names if (parts := run.marked_parts(name))}


def scalars_only(value: dict) -> dict:
    out = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = scalars_only(item)
            if item:
                out[key] = item
        elif item is None or isinstance(item, (bool, int, float, str)):
            out[key] = item
    return out
