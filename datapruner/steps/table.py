"""The step table, in pipeline order, and what is derived from it: the step names, the map steps an
orchestrator fans out, and each command's steps. docs/design.md shows it (steps/describe.py)."""

from __future__ import annotations

from datapruner.errors import DataprunerError
from datapruner.steps import cluster, embed, metrics, report, select, write
from datapruner.steps.contract import Step

TABLE: dict[str, Step] = {s.name: s for stage in (embed, cluster, metrics, select, write, report) for s in stage.STEPS}

STEP_NAMES: tuple[str, ...] = tuple(TABLE)
# the map steps an orchestrator fans out into parallel tasks
MAP_STEPS: tuple[str, ...] = tuple(s.name for s in TABLE.values() if s.kind == "map")
END_TO_END = "score"  # the command that runs every step: `datapruner score SRC --keep F`


def _commands() -> dict[str, tuple[str, ...]]:
    names = dict.fromkeys(c for s in TABLE.values() for c in (s.command, *s.also_in))
    out = {c: tuple(s.name for s in TABLE.values() if c == s.command or c in s.also_in) for c in names}
    return {**out, END_TO_END: STEP_NAMES}


# what each front-end command (CLI, API function, Airflow task) runs, in order
COMMANDS: dict[str, tuple[str, ...]] = _commands()


def get_step(name: str) -> Step:
    if name not in TABLE:
        raise DataprunerError(f"unknown step {name!r}; the steps are {', '.join(STEP_NAMES)}")
    return TABLE[name]


def command_for_users(step: str) -> str:
    """The CLI command that runs a step."""
    return get_step(step).command
