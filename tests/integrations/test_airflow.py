"""The Airflow operator and example DAG, run for real on a throw-away SQLite metadata database.

Everything that imports Airflow runs in a subprocess (airflow_dag_runner.py, or `python -c`) whose
environment points AIRFLOW_HOME at a temporary directory: Airflow reads its configuration once,
at import, so this keeps the pytest process (and the user's ~/airflow) untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datapruner.steps.table import MAP_STEPS, STEP_NAMES

from shardmaker import write_shards

pytest.importorskip("airflow.sdk")
pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "examples" / "airflow_dag.py"
RUNNER = Path(__file__).with_name("airflow_dag_runner.py")
TINY_CONFIG = """\
model: datapruner-tiny
pretrained: none
batch_size: 8
num_workers: 0
device: cpu
clusters: 4
shard_size: 16
"""
N_SHARDS = 4
TIMEOUT_S = 300
PROGRESS_INTERVAL_S = 0.2  # the tiny run's steps last seconds: progress lines every 0.2 s
GUARDED_PASSWORD = "sesame"  # the storage option the guarded:// source needs (airflow_dag_runner.py)
STORE_CONN = {"conn_type": "generic", "extra": {"password": GUARDED_PASSWORD}}


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict:
    """Environment of a fresh Airflow home: SQLite DB migrated, dags folder holding the example DAG."""
    root = tmp_path_factory.mktemp("airflow")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'home' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_DATAPRUNER_STORE": json.dumps(STORE_CONN),  # a connection, as Airflow reads them from env
        "DATAPRUNER_PROGRESS_INTERVAL": str(PROGRESS_INTERVAL_S),
    })
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=TIMEOUT_S)
    return env


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Real shards (4 × 20 samples) and a YAML config for the tiny random-init model."""
    root = tmp_path_factory.mktemp("inputs")
    write_shards(root / "src", n_shards=N_SHARDS, per_shard=20)
    (root / "tiny.yaml").write_text(TINY_CONFIG)
    return {"src": str(root / "src" / f"shard-{{00000..{N_SHARDS - 1:05d}}}.tar"), "config": str(root / "tiny.yaml"),
            "keep": 0.3}


@pytest.fixture(scope="module")
def api_shards(inputs, tmp_path_factory) -> dict[str, bytes]:
    """What datapruner.api.score writes for the same inputs: the expected pruned shards."""
    from datapruner import api
    from datapruner.config import load_config

    run = tmp_path_factory.mktemp("api_run")
    api.score(inputs["src"], run, inputs["keep"], load_config(inputs["config"]), progress=False)
    return pruned_shards(run)


def pruned_shards(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((Path(run) / "shards").glob("*.tar"))}


def run_example_dag(env: dict, tmp_path: Path, conf: dict, *options: str) -> dict:
    result = tmp_path / "dag_result.json"
    proc = subprocess.run([sys.executable, str(RUNNER), str(result), "--conf", json.dumps(conf), *options],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    outcome = json.loads(result.read_text())
    assert outcome.get("state") == "success", proc.stdout[-5000:] + proc.stderr[-5000:]
    outcome["log"] = proc.stdout + proc.stderr  # what the task logs held (dag.test logs to the console)
    return outcome


def progress_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "datapruner.progress" in line]


def events_by_asset(result: dict) -> dict[str, list[dict]]:
    events: dict[str, list[dict]] = {}
    for event in result["asset_events"]:
        events.setdefault(event["name"], []).append(event)
    return events


def run_python(env: dict, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_dag_file_imports_neither_torch_nor_faiss(airflow_env):
    out = run_python(airflow_env, f"""
import runpy, sys
runpy.run_path({str(DAG_FILE)!r})
heavy = sorted(m for m in ("torch", "faiss", "open_clip", "datapruner.api") if m in sys.modules)
print("heavy:", heavy)
assert not heavy, heavy
""")
    assert "heavy: []" in out


def test_operator_rejects_unknown_step_and_missing_source(airflow_env):
    run_python(airflow_env, """
from datapruner.integrations.airflow import DataprunerOperator
for kwargs in ({"step": "score"}, {"step": "embed"}):
    try:
        DataprunerOperator(task_id="t", run_dir="/tmp/run", **kwargs)
    except ValueError as exc:
        print("rejected:", exc)
    else:
        raise AssertionError(f"accepted {kwargs}")
""")


def test_registered_as_airflow_provider(airflow_env):
    out = run_python(airflow_env, """
from airflow.providers_manager import ProvidersManager
info = ProvidersManager().providers["datapruner"]
print(info.data["package-name"], info.data["operators"][0]["python-modules"])
""")
    assert "datapruner ['datapruner.integrations.airflow.operator']" in out


def test_example_dag_runs_and_writes_the_api_shards(airflow_env, inputs, api_shards, tmp_path):
    run_dir = tmp_path / "run"
    result = run_example_dag(airflow_env, tmp_path, {**inputs, "run_dir": str(run_dir)})

    assert result["import_errors"] == {} and result["dag_found"]
    assert result["state"] == "success"
    assert {t: o["state"] for t, o in result["tasks"].items()} == dict.fromkeys(STEP_NAMES, "success")
    write_xcom = result["tasks"]["write"]["xcom"]
    assert write_xcom["outputs"] == {"write": str(run_dir / "shards")}
    assert write_xcom["summary"]["samples"] == round(inputs["keep"] * 80)
    assert len(json.dumps(result["tasks"]["select"]["xcom"])) < 2000  # counts and paths, no per-cluster lists
    assert pruned_shards(run_dir) == api_shards
    assert (run_dir / "report" / "index.html").is_file()  # the report task ran


def test_dag_test_emits_the_shards_and_manifest_assets(airflow_env, inputs, tmp_path):
    """dag.test() records one event per asset in the metadata DB: the manifest from select, the shards
    from write; each extra says where this run put them (a training DAG reads it)."""
    run_dir = tmp_path / "run"
    result = run_example_dag(airflow_env, tmp_path, {**inputs, "run_dir": str(run_dir)})

    events = events_by_asset(result)
    assert set(events) == {"datapruner_pruned_shards", "datapruner_manifest"}
    (shards,), (manifest,) = events["datapruner_pruned_shards"], events["datapruner_manifest"]
    assert (shards["source_task_id"], manifest["source_task_id"]) == ("write", "select")
    assert shards["extra"]["run_dir"] == str(run_dir) and shards["extra"]["shards"] == str(run_dir / "shards")
    assert shards["extra"]["shard_files"] == len(pruned_shards(run_dir)) > 0
    assert shards["extra"]["counts"]["kept"] == round(inputs["keep"] * 80)
    assert manifest["extra"]["manifest"] == str(run_dir / "manifest" / "keep.parquet")

    lines = progress_lines(result["log"])  # the embed step runs for seconds: lines every 0.2 s
    assert any("embed: " in line for line in lines), "no datapruner.progress line from embed in the task log"


def test_embed_retried_after_failing_midway_resumes_to_the_same_shards(airflow_env, inputs, api_shards, tmp_path):
    """An earlier attempt embedded parts 0 and 1; part 2's output path is taken by a directory that is
    not datapruner's, so the embed task fails (datapruner never overwrites what it did not write).
    The on_retry callback clears the path; the retry embeds only parts 2 and 3 and the DAG finishes
    with the same shards as the API."""
    from datapruner import api
    from datapruner.config import load_config

    run_dir = tmp_path / "run"
    api.embed(inputs["src"], run_dir, load_config(inputs["config"]), progress=False, parts=[0, 1])
    squatter = run_dir / "embeddings" / "img_emb" / "img_emb_2.npy"
    squatter.mkdir(parents=True)
    result = run_example_dag(airflow_env, tmp_path, {**inputs, "run_dir": str(run_dir)},
                             "--retry-delay-s", "0", "--clear-on-retry", f"embed={squatter}")

    embed = result["tasks"]["embed"]
    assert result["state"] == "success"
    assert embed["try_number"] == 2 and len(embed["earlier_tries"]) == 1
    assert embed["xcom"]["summary"]["shards"] == N_SHARDS - 2  # parts 0 and 1 were reused
    assert embed["xcom"]["summary"]["counts"]["valid"] == 80
    assert pruned_shards(run_dir) == api_shards


def test_mapped_dag_fans_the_map_steps_out_and_writes_the_api_shards(airflow_env, inputs, api_shards, tmp_path):
    """The mapped DAG, reading its source through storage options from an Airflow connection: the
    guarded:// filesystem refuses to open without the connection's password."""
    run_dir = tmp_path / "run"
    conf = {**inputs, "src": "guarded://" + inputs["src"], "run_dir": str(run_dir), "groups": 2,
            "conn_id": "datapruner_store"}
    result = run_example_dag(airflow_env, tmp_path, conf, "--dag-id", "datapruner_prune_mapped",
                             "--guarded-fs", GUARDED_PASSWORD)

    assert result["import_errors"] == {} and result["dag_found"]
    assert result["state"] == "success", result["tasks"]
    states = {t: o["state"] for t, o in result["tasks"].items()}
    assert set(states.values()) == {"success"}
    # without --embeddings and semdedup the join steps and dedup have no parts: their one mapped task does
    # nothing (an empty expansion would skip every task after it)
    empty = {"index", "scan", "join", "dedup"}
    assert {t for t in states if "[" in t} == {f"{step}[{g}]" for step in MAP_STEPS for g in (0, 1)
                                               if step not in empty or g == 0}
    assert all(result["tasks"][f"parts_{step}"]["xcom"] == [[]] for step in empty)
    assert {t for t in states if "[" not in t} == ({s for s in STEP_NAMES if s not in MAP_STEPS}
                                                   | {f"parts_{s}" for s in MAP_STEPS})
    assert result["tasks"]["parts_embed"]["xcom"] == [[0, 1], [2, 3]]
    assert result["tasks"]["parts_write"]["xcom"] == [[0], [1]]
    assert pruned_shards(run_dir) == api_shards
    events = events_by_asset(result)  # one shards event, after every mapped write
    assert [e["source_task_id"] for e in events["datapruner_pruned_shards"]] == ["report"]
    assert [e["source_task_id"] for e in events["datapruner_manifest"]] == ["select"]


def test_killed_embed_task_stops_and_its_retry_resumes(airflow_env, inputs, api_shards, tmp_path):
    """SIGTERM (what a worker's supervisor sends a task it stops) once embed has finished a part: on_kill
    stops the step, the try fails, and Airflow's retry embeds only the parts not yet done."""
    run_dir = tmp_path / "run"
    result = run_example_dag(airflow_env, tmp_path, {**inputs, "run_dir": str(run_dir)},
                             "--retry-delay-s", "0", "--sigterm-after", "embed=1")

    embed = result["tasks"]["embed"]
    assert embed["earlier_tries"] == ["failed"] and embed["try_number"] == 2
    assert "stopped by on_kill" in result["log"]
    reused = embed["xcom"]["summary"]["parts_reused"]
    assert 1 <= reused < N_SHARDS and embed["xcom"]["summary"]["shards"] == N_SHARDS - reused
    assert not list(run_dir.glob("_lock*"))
    assert pruned_shards(run_dir) == api_shards
