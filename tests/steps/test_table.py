"""The step table as a newcomer reads it: every config field a step's work reads is in its token or named
as deliberately left out, and its token hashes only what it declares."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest

from datapruner import api
from datapruner.config import Config
from datapruner.steps import table
from datapruner.steps.table import COMMANDS, MAP_STEPS, STEP_NAMES, TABLE

from conftest import TINY

FIELDS = {f.name for f in dataclasses.fields(Config)}
READS: dict[str, set] = defaultdict(set)
_phase: list[str] = []


class RecordingConfig(Config):
    """A Config that notes, per phase, which fields are read."""

    def __getattribute__(self, name):
        if name in FIELDS and _phase:
            READS[_phase[-1]].add(name)
        return object.__getattribute__(self, name)


def _recorded(fn, phase: str):
    if fn is None:
        return None

    def wrapper(*args, **kwargs):
        _phase.append(phase)
        try:
            result = fn(*args, **kwargs)
            if hasattr(result, "__next__"):  # a map step's generator: the work happens as it is consumed
                result = list(result)
            return result
        finally:
            _phase.pop()
    return wrapper


def _recording_table(monkeypatch) -> None:
    for name, step in list(TABLE.items()):
        monkeypatch.setitem(TABLE, name, dataclasses.replace(
            step, call=_recorded(step.call, f"work:{name}"), parts=_recorded(step.parts, f"work:{name}"),
            setup=_recorded(step.setup, f"work:{name}"), token=_recorded(step.token, f"token:{name}")))


def _declared(step, cfg) -> set:
    _phase.append(f"inputs:{step.name}")
    try:
        step.inputs(cfg)
    finally:
        _phase.pop()
    return READS.pop(f"inputs:{step.name}", set())


POLICIES = {
    "dbp budget, semdedup filter, el2n column": dict(metric="dbp", budget="dbp", filters=({"name": "semdedup", "eps": 1e-4},),
                                                      metrics=("el2n_probe",)),
    "clip_score, cluster budget": dict(metric="clip_score", budget="cluster", order="easy"),
}


@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_config_field_a_step_reads_is_in_its_token_or_left_out_by_name(policy, shard_dir, tmp_path, monkeypatch):
    READS.clear()
    _recording_table(monkeypatch)
    cfg = RecordingConfig(**TINY, clusters=3, shard_size=16, **POLICIES[policy])
    api.score(str(shard_dir), tmp_path / "run", 0.5, cfg, progress=False)
    api.score(str(shard_dir), tmp_path / "joined", 0.5, cfg.replace(embeddings=str(tmp_path / "run/embeddings")),
              progress=False)
    assert {p.split(":")[1] for p in READS if p.startswith("work:")} >= {"embed", "cluster", "fit", "select", "write"}
    problems = []
    for name, step in TABLE.items():
        declared = _declared(step, cfg)
        unaccounted = READS[f"work:{name}"] - declared - set(step.untokened)
        undeclared_in_token = READS[f"token:{name}"] - declared
        if unaccounted:
            problems.append(f"{name} reads {sorted(unaccounted)}: neither in its token's inputs nor in untokened")
        if undeclared_in_token:
            problems.append(f"{name}'s token reads {sorted(undeclared_in_token)}, which its inputs do not declare")
    assert not problems, "\n".join(problems)


def test_what_is_derived_from_the_table():
    assert STEP_NAMES == tuple(TABLE) and STEP_NAMES[0] == "index" and STEP_NAMES[-1] == "report"
    assert MAP_STEPS == ("index", "scan", "join", "embed", "assign", "dedup", "measure", "write")
    assert COMMANDS["score"] == STEP_NAMES
    assert COMMANDS["select"] == ("assign", "fit", "dedup", "measure", "select", "report")
    assert COMMANDS["embed"] == ("index", "scan", "join", "embed")
    for step in TABLE.values():
        assert step.command in COMMANDS and step.name in COMMANDS[step.command]
        assert set(step.untokened) <= FIELDS, step.name
        assert set(step.after) <= set(STEP_NAMES[:STEP_NAMES.index(step.name)]), step.name
    assert table.command_for_users("plan") == "write"


def test_the_design_page_shows_the_current_table():
    from pathlib import Path

    from datapruner.steps.describe import rewritten

    page = Path(__file__).resolve().parents[2] / "docs/design.md"
    assert page.read_text() == rewritten(page.read_text()), \
        "docs/design.md's step table is stale: python -m datapruner.steps.describe docs/design.md"
