"""Example Airflow DAGs: prune a WebDataset source with one task per datapruner step.

    datapruner_prune:         one task per step of datapruner's step table (datapruner/steps/table.py), in
                              table order, e.g. ... → embed → cluster → assign → fit → dedup → measure → select
                              → plan → write → report
    datapruner_prune_mapped:  the same, with the map steps (steps.table.MAP_STEPS: index, scan, join, embed,
                              assign, dedup, measure, write) fanned out as mapped tasks, one per group of
                              parts, so Airflow workers share the work: ... → parts_embed → embed[g] →
                              cluster → parts_assign → assign[g] → fit → parts_dedup → dedup[g] →
                              parts_measure → measure[g] → select → plan → parts_write → write[g] → report

The task lists come from the step table (steps.table.STEP_NAMES), so a step added to the table is a task
here too. Both DAGs publish two Assets: the manifest (emitted by `select`) and the pruned shards
(emitted once every output shard is written: by `write`, or in the mapped DAG by `report`, the task
after the mapped writes). A training DAG runs on them with `schedule=[PRUNED_SHARDS]`; the event's
extra holds the run directory, the shards and manifest paths, and the counts.

Every task is idempotent and safe to retry: datapruner writes each part to a temporary name,
renames it into place and leaves a completion marker, so a retried (or re-triggered) task skips
the parts that are already done and redoes only the rest. Parsing this file imports Airflow and
datapruner.config only; torch, open_clip and faiss load inside the tasks.

Inputs come from DAG params (set them when triggering: `airflow dags trigger datapruner_prune
--conf '{"src": "...", "run_dir": "..."}'`); their defaults come from environment variables:

    DATAPRUNER_SRC      source shards, e.g. s3://bucket/laion/{00000..00999}.tar
    DATAPRUNER_RUN_DIR  run directory (one per source; a rerun resumes it); also the assets' URIs
    DATAPRUNER_CONFIG   YAML preset (model, clusters, policy, ...); empty = package defaults
    DATAPRUNER_KEEP     fraction of valid samples to keep (default 0.3)
    DATAPRUNER_METRIC   metric that orders samples (default: the config's, prototypicality)
    DATAPRUNER_GROUPS   mapped DAG: how many mapped tasks per map step at most (default 8)
    DATAPRUNER_CONN_ID  Airflow connection whose extra holds fsspec storage options for SRC (empty: none)
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, chain

from datapruner.integrations.airflow.operator import DataprunerOperator, steps_reading_source
from datapruner.steps.table import MAP_STEPS, STEP_NAMES

RUN_DIR = os.environ.get("DATAPRUNER_RUN_DIR", "/data/runs/prune")

PARAMS = {
    "src": Param(os.environ.get("DATAPRUNER_SRC", "/data/shards/{00000..00009}.tar"), type="string",
                 description="Source WebDataset shards (brace-expanded; local path or fsspec URL)."),
    "run_dir": Param(RUN_DIR, type="string",
                     description="Run directory; a rerun on the same directory resumes it."),
    "config": Param(os.environ.get("DATAPRUNER_CONFIG", ""), type="string",
                    description="YAML preset (empty: package defaults)."),
    "keep": Param(float(os.environ.get("DATAPRUNER_KEEP", "0.3")), type="number", minimum=0, maximum=1,
                  description="Fraction of valid samples to keep."),
    "metric": Param(os.environ.get("DATAPRUNER_METRIC", ""), type="string",
                    description="Metric that orders samples (empty: the config's)."),
    "groups": Param(int(os.environ.get("DATAPRUNER_GROUPS", "8")), type="integer", minimum=1,
                    description="Mapped DAG: mapped tasks per map step, at most."),
    "conn_id": Param(os.environ.get("DATAPRUNER_CONN_ID", ""), type="string",
                     description="Airflow connection whose extra holds fsspec storage options for src (empty: none)."),
}

# What a training DAG schedules on (`schedule=[PRUNED_SHARDS]`). URIs are fixed when the file is parsed;
# the event's extra says where a run with another run_dir param put its outputs.
PRUNED_SHARDS = Asset(name="datapruner_pruned_shards", uri=f"file://{RUN_DIR}/shards", group="datapruner")
MANIFEST = Asset(name="datapruner_manifest", uri=f"file://{RUN_DIR}/manifest/keep.parquet", group="datapruner")

DEFAULT_ARGS = {
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
}

COMMON = {
    "run_dir": "{{ params.run_dir }}",
    "config_path": "{{ params.config }}",
    "keep": "{{ params.keep }}",
    "metric": "{{ params.metric }}",
    "conn_id": "{{ params.conn_id }}",
}

DAG_SETTINGS = dict(schedule=None, params=PARAMS, default_args=DEFAULT_ARGS, catchup=False, tags=["datapruner"],
                    max_active_runs=1,  # two runs must not write the same run directory at once
                    doc_md=__doc__)

STEPS = STEP_NAMES  # the step table's order; a step added there is a task here
READS_SOURCE = steps_reading_source()


def source(step: str) -> dict:
    return {"src": "{{ params.src }}"} if step in READS_SOURCE else {}


def outlets(step: str, mapped: bool = False) -> dict:
    """select publishes the manifest and write the pruned shards; in the mapped DAG write is many tasks,
    so the task after them (report) publishes the shards: one event, once every shard is written."""
    shards_by = STEPS[STEPS.index("write") + 1] if mapped else "write"
    assets = [MANIFEST] * (step == "select") + [PRUNED_SHARDS] * (step == shards_by)
    return {"outlets": assets} if assets else {}


def step_task(step: str, mapped: bool = False, **kwargs):
    timeout = {"execution_timeout": timedelta(hours=24)} if step in MAP_STEPS else {}
    return DataprunerOperator(task_id=step, step=step, **source(step), **timeout, **outlets(step, mapped), **COMMON,
                              **kwargs)


with DAG(
    dag_id="datapruner_prune",
    description="Prune an image-text WebDataset: one task per step of the step table.",
    **DAG_SETTINGS,
) as dag:
    chain(*(step_task(step) for step in STEPS))


def fan_out(step: str):
    """A partition task and the mapped tasks that run its groups of parts."""
    plan = DataprunerOperator(task_id=f"parts_{step}", step="partition", of=step, groups="{{ params.groups }}",
                              **source(step), **COMMON)
    mapped = DataprunerOperator.partial(task_id=step, step=step, **source(step), **COMMON,
                                        execution_timeout=timedelta(hours=24)).expand(parts=plan.output)
    return plan, mapped


with DAG(
    dag_id="datapruner_prune_mapped",
    description="Prune an image-text WebDataset with the map steps as mapped tasks.",
    **DAG_SETTINGS,
) as mapped_dag:
    chain(*(task for step in STEPS for task in (fan_out(step) if step in MAP_STEPS else [step_task(step, True)])))
