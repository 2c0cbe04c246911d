"""Run the example DAG once with `dag.test()` and write what happened as JSON.

Run in a subprocess whose environment points AIRFLOW_HOME at a throw-away, migrated SQLite
database: Airflow reads its configuration once, at import, so the test process stays clean.

    python airflow_dag_runner.py RESULT.json --conf '{"src": ..., "run_dir": ...}'
        [--retry-delay-s 0] [--clear-on-retry TASK=PATH] [--dag-id datapruner_prune_mapped]
        [--sigterm-after STEP=N] [--guarded-fs PASSWORD]

--retry-delay-s replaces every task's retry_delay (default 0): the DAG's own 2-minute delay with
exponential backoff would make `dag.test()` sleep minutes after any failed try, so a failing task
would show up as a subprocess timeout instead of a failed run with its traceback.

--clear-on-retry removes PATH from an `on_retry_callback` of TASK: the way an operator fixes
the cause of a failure (here, something squatting on an output path) before Airflow retries.

--sigterm-after sends this process SIGTERM once N parts of STEP are marked done: what a worker's
supervisor does to a task it stops (Airflow then calls the operator's on_kill).

--guarded-fs registers an fsspec filesystem `guarded://` (local files) that refuses to open without
the storage option password=PASSWORD: the source a DAG reads with its connection's storage options.

The result also lists the asset events in the metadata database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

DAG_ID = "datapruner_prune"


def load_example_dag(dags_folder: str, dag_id: str = DAG_ID):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder)
    return bag.dags.get(dag_id), {str(k): str(v) for k, v in bag.import_errors.items()}


def clear_path_on_retry(dag, task_id: str, path: str) -> None:
    def remove(context) -> None:
        shutil.rmtree(path, ignore_errors=True)

    dag.get_task(task_id).on_retry_callback = [remove]  # the constructor stores callbacks as a list


def sigterm_after(run_dir: str, step: str, count: int) -> threading.Thread:
    """SIGTERM to this process once `count` parts of `step` are marked done in `run_dir`."""
    from datapruner.io.rundir import RunDir

    def marked() -> int:
        rd = RunDir(run_dir)
        return sum(1 for part in rd.marked_parts(step) if rd.read_marker(step, part))

    def watch() -> None:
        deadline = time.time() + 600
        while marked() < count and time.time() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def register_guarded_fs(expected: str) -> None:
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    class GuardedFileSystem(LocalFileSystem):
        protocol = ("guarded",)

        def __init__(self, password: str | None = None, **kwargs):
            if password != expected:
                raise PermissionError("guarded:// refuses to open without its password storage option")
            super().__init__(**kwargs)

    fsspec.register_implementation("guarded", GuardedFileSystem, clobber=True)


def asset_events(dag_run) -> list[dict]:
    """The asset events this DAG run emitted (the module's tests share one metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(AssetModel.name, AssetModel.uri, AssetEvent.source_task_id,
                                      AssetEvent.source_map_index, AssetEvent.extra)
                               .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                               .where(AssetEvent.source_dag_id == dag_run.dag_id,
                                      AssetEvent.source_run_id == dag_run.run_id)
                               .order_by(AssetEvent.id)).all()
    return [{"name": name, "uri": uri, "source_task_id": task, "source_map_index": index, "extra": extra}
            for name, uri, task, index, extra in rows]


def task_outcomes(dag_run) -> dict:
    """Per task: final state, try number, states of earlier tries, and the XCom it returned."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    outcomes = {}
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            earlier = session.scalars(select(TaskInstanceHistory.state).where(
                TaskInstanceHistory.dag_id == ti.dag_id, TaskInstanceHistory.run_id == ti.run_id,
                TaskInstanceHistory.task_id == ti.task_id).order_by(TaskInstanceHistory.try_number)).all()
            xcom = session.scalars(XComModel.get_many(run_id=ti.run_id, dag_ids=ti.dag_id, task_ids=ti.task_id,
                                                      key="return_value")).first()
            name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            outcomes[name] = {
                "state": str(ti.state), "try_number": ti.try_number, "earlier_tries": [str(s) for s in earlier],
                "xcom": XComModel.deserialize_value(xcom) if xcom is not None else None,
            }
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("result")
    parser.add_argument("--conf", required=True)
    parser.add_argument("--retry-delay-s", type=float, default=0.0)
    parser.add_argument("--clear-on-retry", default=None)
    parser.add_argument("--dag-id", default=DAG_ID)
    parser.add_argument("--sigterm-after", default=None)
    parser.add_argument("--guarded-fs", default=None)
    args = parser.parse_args()
    conf_values = json.loads(args.conf)
    if args.guarded_fs:
        register_guarded_fs(args.guarded_fs)

    from airflow.configuration import conf

    dag, import_errors = load_example_dag(conf.get("core", "dags_folder"), args.dag_id)
    result: dict = {"import_errors": import_errors, "dag_found": dag is not None}
    if dag is not None:
        if args.retry_delay_s is not None:
            for task in dag.tasks:
                task.retry_delay = timedelta(seconds=args.retry_delay_s)
        if args.clear_on_retry:
            task_id, path = args.clear_on_retry.split("=", 1)
            clear_path_on_retry(dag, task_id, path)
        if args.sigterm_after:
            step, count = args.sigterm_after.split("=", 1)
            sigterm_after(conf_values["run_dir"], step, int(count))
        dag_run = dag.test(run_conf=conf_values)
        result.update(state=str(dag_run.state), tasks=task_outcomes(dag_run), asset_events=asset_events(dag_run))
    Path(args.result).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
