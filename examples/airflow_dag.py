"""Example Airflow DAGs: prune a WebDataset source with one task per datapruner step.

    datapruner_prune:         one task per step of datapruner's step table (datapruner/steps.py):
        embed → cluster → assign → fit → score → select → plan → write → report
    datapruner_prune_mapped:  the same, with the map steps (embed, assign, score, write) fanned out as
                              mapped tasks, one per group of parts, so Airflow workers share the work:
        parts_embed → embed[g] → cluster → parts_assign → assign[g] → fit → parts_score → score[g]
            → select → parts_write → write[g] → report

Every task is idempotent and safe to retry: datapruner writes each part to a temporary name,
renames it into place and leaves a completion marker, so a retried (or re-triggered) task skips
the parts that are already done and redoes only the rest. Parsing this file imports Airflow and
datapruner.config only; torch, open_clip and faiss load inside the tasks.

Inputs come from DAG params (set them when triggering: `airflow dags trigger datapruner_prune
--conf '{"src": "...", "run_dir": "..."}'`); their defaults come from environment variables:

    DATAPRUNER_SRC      source shards, e.g. s3://bucket/laion/{00000..00999}.tar
    DATAPRUNER_RUN_DIR  run directory (one per source; a rerun resumes it)
    DATAPRUNER_CONFIG   YAML preset (model, clusters, policy, ...); empty = package defaults
    DATAPRUNER_KEEP     fraction of valid samples to keep (default 0.3)
    DATAPRUNER_METRIC   metric that orders samples (default: the config's, prototypicality)
    DATAPRUNER_GROUPS   mapped DAG: how many mapped tasks per map step at most (default 8)
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Param, chain

from datapruner.integrations.airflow.operator import DataprunerOperator
from datapruner.steps import MAP_STEPS, STEP_NAMES

PARAMS = {
    "src": Param(os.environ.get("DATAPRUNER_SRC", "/data/shards/{00000..00009}.tar"), type="string",
                 description="Source WebDataset shards (brace-expanded; local path or fsspec URL)."),
    "run_dir": Param(os.environ.get("DATAPRUNER_RUN_DIR", "/data/runs/prune"), type="string",
                     description="Run directory; a rerun on the same directory resumes it."),
    "config": Param(os.environ.get("DATAPRUNER_CONFIG", ""), type="string",
                    description="YAML preset (empty: package defaults)."),
    "keep": Param(float(os.environ.get("DATAPRUNER_KEEP", "0.3")), type="number", minimum=0, maximum=1,
                  description="Fraction of valid samples to keep."),
    "metric": Param(os.environ.get("DATAPRUNER_METRIC", ""), type="string",
                    description="Metric that orders samples (empty: the config's)."),
    "groups": Param(int(os.environ.get("DATAPRUNER_GROUPS", "8")), type="integer", minimum=1,
                    description="Mapped DAG: mapped tasks per map step, at most."),
}

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
}

DAG_SETTINGS = dict(schedule=None, params=PARAMS, default_args=DEFAULT_ARGS, catchup=False, tags=["datapruner"],
                    max_active_runs=1,  # two runs must not write the same run directory at once
                    doc_md=__doc__)

STEPS = STEP_NAMES


def step_task(step: str, **kwargs):
    source = {"src": "{{ params.src }}"} if step == "embed" else {}
    timeout = {"execution_timeout": timedelta(hours=24)} if step in MAP_STEPS else {}
    return DataprunerOperator(task_id=step, step=step, **source, **timeout, **COMMON, **kwargs)


with DAG(
    dag_id="datapruner_prune",
    description="Prune an image-text WebDataset: one task per step of the step table.",
    **DAG_SETTINGS,
) as dag:
    chain(*(step_task(step) for step in STEPS))


def fan_out(step: str):
    """A partition task and the mapped tasks that run its groups of parts."""
    source = {"src": "{{ params.src }}"} if step == "embed" else {}
    plan = DataprunerOperator(task_id=f"parts_{step}", step="partition", of=step, groups="{{ params.groups }}",
                              **source, **COMMON)
    mapped = DataprunerOperator.partial(task_id=step, step=step, **source, **COMMON).expand(parts=plan.output)
    return plan, mapped


with DAG(
    dag_id="datapruner_prune_mapped",
    description="Prune an image-text WebDataset with the map steps as mapped tasks.",
    **DAG_SETTINGS,
) as mapped_dag:
    tasks = []
    for step in STEPS:
        if step == "plan":
            continue  # parts_write runs the plan (it needs it to count the output shards)
        tasks.extend(fan_out(step) if step in MAP_STEPS else [step_task(step)])
    chain(*tasks)
