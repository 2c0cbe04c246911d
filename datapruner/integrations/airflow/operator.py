"""DataprunerOperator: one datapruner.api step as an Airflow task.

Importing this module loads only Airflow and datapruner.config (yaml): torch, open_clip and faiss
are imported inside `execute`, when the task runs, never when the scheduler parses a DAG file.
A retried task resumes: the API skips every part whose completion marker matches its inputs.

What a task adds to the API call:
- progress: long steps log `datapruner.progress` lines into the task log at a steady interval;
- storage options: `conn_id` names an Airflow connection whose extra is used as fsspec storage
  options (credentials, endpoint) for the source shards and precomputed embeddings;
- assets: each `Asset` in `outlets` gets an event with the run's facts (paths, counts) as its extra;
- on_kill: a task that Airflow stops (SIGTERM: a worker shutting down, a task marked failed) stops
  its step between two Python statements; finished parts keep their markers, so a retry resumes.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from airflow.sdk import BaseOperator

from datapruner.config import Config, load_config

log = logging.getLogger(__name__)

PARTITION = "partition"
PROGRESS_INTERVAL_S = 30.0  # default seconds between progress lines in the task log


def step_names() -> tuple[str, ...]:
    """The step table's names, plus `score` (every step, end to end)."""
    from datapruner.steps.table import END_TO_END, STEP_NAMES

    return (*STEP_NAMES, END_TO_END)


def steps_reading_source() -> tuple[str, ...]:
    """The steps that read SRC: those of the `embed` command (the step table's first steps), and score."""
    from datapruner.steps.table import COMMANDS, END_TO_END

    return (*COMMANDS["embed"], END_TO_END)


class StepKilled(BaseException):
    """Raised in the task's main thread by `on_kill`. A BaseException, like KeyboardInterrupt: no
    `except Exception` in a step (one bad sample never stops a run) may take it for a bad sample."""


class DataprunerOperator(BaseOperator):
    """Run one step of datapruner.api (the same functions the CLI calls) on a run directory.

    :param step: a step of the table (``datapruner.steps.table.STEP_NAMES``), score (all of them,
        end to end), or partition: split the map step `of` into at most `groups` groups of parts and
        return them (a list of lists) for ``.expand(parts=...)`` of mapped tasks.
    :param run_dir: the run directory (templated).
    :param src: source shards, e.g. ``s3://bucket/{00000..00999}.tar`` (templated; the steps of the
        embed command and score only).
    :param keep: fraction of valid samples to keep (templated; a string is converted).
    :param metric: the metric that orders samples (templated).
    :param config_path: a YAML preset (templated); empty means the package defaults.
    :param overrides: further Config options, e.g. ``{"clusters": 100}`` (values templated).
    :param parts: for the map steps (embed, assign, measure, write): only these parts (a mapped task's group).
    :param of: for partition: the map step to split.
    :param groups: for partition: how many groups at most (templated).
    :param conn_id: an Airflow connection whose extra holds fsspec storage options for the source
        (e.g. ``{"key": ..., "secret": ..., "endpoint_url": ...}`` for s3; an ``aws`` connection's
        login and password are used as key and secret when the extra has none) (templated; empty: none).
    :param progress: log progress lines (logger ``datapruner.progress``) during long steps.
    :param progress_interval: seconds between progress lines (default: ``DATAPRUNER_PROGRESS_INTERVAL``
        from the worker's environment, else 30).
    :return: a small XCom: the step, the run directory, output paths and counts (never per-cluster lists).

    ``outlets=[Asset(...)]`` (the pruned shards, the manifest) emit an asset event when the task
    succeeds; its extra holds the run directory, the paths of the shards and the manifest, and counts.
    """

    template_fields: Sequence[str] = ("run_dir", "src", "keep", "metric", "config_path", "overrides", "groups",
                                      "conn_id")
    template_ext: Sequence[str] = ()
    ui_color = "#d9ead3"

    def __init__(self, *, step: str, run_dir: str, src: str | None = None, keep: float | str | None = None,
                 metric: str | None = None, config_path: str | None = None, overrides: dict | None = None,
                 parts: list[int] | None = None, of: str | None = None, groups: int | str = 8,
                 conn_id: str | None = None, progress: bool = True, progress_interval: float | None = None,
                 **kwargs: Any) -> None:
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
        self.progress_interval = progress_interval
        self.parts = parts
        self.of = of
        self.groups = groups
        self.conn_id = conn_id
        self._running = False  # execute is inside the api call (on_kill may stop it)
        self._killed = False

    def execute(self, context: Any) -> dict | list:
        cfg = self.resolved_config()
        log.info("datapruner %s: run_dir=%s src=%s keep=%s metric=%s parts=%s", self.step, self.run_dir, self.src,
                 cfg.keep, cfg.metric, self.parts)
        from datapruner.io.shards import storage_options

        with storage_options(self.storage_options(), self.storage_urls(cfg)), self.progress_lines(), \
                self.interruptible():
            if self.step == PARTITION:
                from datapruner import api

                return api.partition(self.of, self.run_dir, cfg, int(self.groups), self.src)
            summary = run_step(self.step, self.src, self.run_dir, cfg, self.progress, self.parts)
        result = xcom_summary(self.step, self.run_dir, summary)
        log.info("datapruner %s done: %s", self.step, result)
        self.emit_assets(context)
        return result

    def resolved_config(self) -> Config:
        """Package defaults, then the YAML file, then keep/metric/overrides (rendered templates)."""
        keep = None if self.keep in (None, "") else float(self.keep)
        return load_config(self.config_path or None, keep=keep, metric=self.metric or None, **self.overrides)

    # on_kill -------------------------------------------------------------------------------------------

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self._running, self._killed = True, False
        try:
            yield
        finally:
            self._running = False

    def on_kill(self) -> None:
        """Stop the step. Airflow calls this from its SIGTERM handler, in the task's main thread, where
        the step runs: raising there unwinds the step like Ctrl-C would (its `finally` blocks close
        files, stop decode workers and Ray actors, release the run's lock). Parts finished before keep
        their completion markers and a part in flight leaves only a temp file, so a retry or rerun
        resumes. Called after execute has returned (an execution timeout), it does nothing."""
        if not self._running or self._killed:
            return
        self._killed = True
        if threading.current_thread() is not threading.main_thread():
            log.warning("datapruner %s: on_kill outside the main thread; the step stops when the task "
                        "process exits", self.step)
            return
        log.warning("datapruner %s: killed; stopping the step (finished parts are kept: a rerun resumes)",
                    self.step)
        raise StepKilled(f"datapruner {self.step} was stopped by on_kill; finished parts are kept and a "
                         "rerun resumes")

    # progress, storage, assets -----------------------------------------------------------------------

    @contextmanager
    def progress_lines(self) -> Iterator[None]:
        """A task log is no terminal: progress as log lines, at the operator's interval when it sets one."""
        from datapruner import progress

        wanted = {progress.MODE_ENV: os.environ.get(progress.MODE_ENV) or "log"}
        if self.progress_interval is not None:
            wanted[progress.INTERVAL_ENV] = str(float(self.progress_interval))
        saved = {name: os.environ.get(name) for name in wanted}
        os.environ.update(wanted)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def storage_options(self) -> dict:
        """The fsspec storage options of connection `conn_id` (empty without one)."""
        if not self.conn_id:
            return {}
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.conn_id)
        options = dict(conn.extra_dejson or {})
        if conn.conn_type in ("aws", "s3") and conn.login:
            options.setdefault("key", conn.login)
            if conn.password:
                options.setdefault("secret", conn.password)
        log.info("datapruner %s: storage options from connection %r (%s)", self.step, self.conn_id,
                 ", ".join(sorted(options)) or "none")
        return options

    def storage_urls(self, cfg: Config) -> list[str]:
        """What the step may open through fsspec: SRC, precomputed embeddings, the run's recorded shards."""
        urls = [u for u in (self.src, cfg.embeddings) if u]
        if self.conn_id:
            from datapruner.io.rundir import RunDir

            rd = RunDir(self.run_dir)
            if rd.exists():
                urls.extend(rd.read_run_json().get("shards", []))
        return urls

    def emit_assets(self, context: Any) -> None:
        """Each Asset outlet's event carries where the run's outputs are, and counts."""
        from airflow.sdk import Asset

        assets = [o for o in (self.outlets or []) if isinstance(o, Asset)]
        if not assets or not isinstance(context, dict) or "outlet_events" not in context:
            return
        extra = asset_extra(self.run_dir)
        for asset in assets:
            context["outlet_events"][asset].extra = extra


def _check_step(step: str, src: str | None, of: str | None = None) -> None:
    from datapruner.steps.table import MAP_STEPS

    if step == PARTITION:
        if of not in MAP_STEPS:
            raise ValueError(f"partition needs of= one of {', '.join(MAP_STEPS)}, got {of!r}")
        step = of
    if step not in step_names():
        raise ValueError(f"unknown datapruner step {step!r}: use one of partition, {', '.join(step_names())}")
    if step in ("embed", "score") and not src:
        raise ValueError(f"datapruner step {step!r} needs src (the source shards)")


def run_step(step: str, src: str | None, run_dir: str, cfg: Config, progress: bool = True,
             parts: list[int] | None = None) -> dict:
    """The datapruner.api call for `step`; the heavy libraries load here."""
    from datapruner import api

    if step == "score":
        return api.score(src, run_dir, cfg.keep, cfg, progress=progress)
    reads_source = step in steps_reading_source() and src
    return api.step(step, run_dir, cfg, src if reads_source else None, progress=progress, parts=parts)


def asset_extra(run_dir: str) -> dict:
    """An asset event's extra: the run directory, its pruned shards and manifest, and the counts."""
    import json

    from datapruner.io.rundir import RunDir

    rd = RunDir(run_dir)
    extra: dict = {"run_dir": str(rd.root), "shards": str(rd.shards_dir), "manifest": str(rd.keep_parquet),
                   "shard_files": len(list(rd.shards_dir.glob("*.tar"))) if rd.shards_dir.is_dir() else 0}
    if rd.summary_json.is_file():
        summary = json.loads(rd.summary_json.read_text())
        extra["counts"] = scalars_only(summary.get("counts", {}))
        if "keep_fraction" in summary:
            extra["keep_fraction"] = summary["keep_fraction"]
    return extra


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
    from datapruner.steps.table import STEP_NAMES, get_step

    run = RunDir(root)
    names = STEP_NAMES if step == "score" else (step,)
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
