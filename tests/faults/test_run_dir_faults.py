"""Every case of run_dir_cases.py: the command ends with its exit code and its one `error:` line (or none),
never a traceback, and what must hold afterwards holds (no shell command or pickle ran, no user file
written).

    .venv/bin/python -m pytest -q tests/faults/test_run_dir_faults.py -s     # prints the table
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_dir_cases import CASES, Case  # noqa: E402

from datapruner.cli import app  # noqa: E402


@dataclass
class Outcome:
    command: str
    exit: int
    lines: list[str]  # the `error:` lines
    problems: list[str]


def run_case(case: Case, root: Path) -> Outcome:
    setup = case.build(root)
    result = CliRunner().invoke(app, [*setup.args, "-q"])
    lines = [line.replace(str(root), "ROOT") for line in result.stderr.splitlines() if line.startswith("error:")]
    problems = setup.after()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problems.append(f"traceback: {type(result.exception).__name__}: {result.exception}")
    if "Traceback" in result.stderr:
        problems.append("a traceback on stderr")
    command = " ".join(a.replace(str(root), "ROOT") for a in setup.args[:2])
    return Outcome(command, result.exit_code, lines, problems)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    found = {c.name: run_case(c, tmp_path_factory.mktemp("case")) for c in CASES}
    print("\n" + table(found))
    return found


def table(found: dict[str, Outcome]) -> str:
    width = max(len(name) for name in found)
    lines = [f"{'case':<{width}}  {'command':<22}  exit  problems  line"]
    for name, o in found.items():
        lines.append(f"{name:<{width}}  {o.command[:22]:<22}  {o.exit:>4}  {len(o.problems):>8}  "
                     f"{o.lines[0][:160] if o.lines else '(completes)'}")
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_case_ends_with_its_exit_code_and_one_line(outcomes, case):
    o = outcomes[case.name]
    assert not o.problems, o.problems
    assert o.exit == case.exit, o.lines
    if case.line is None:
        assert o.lines == []
    else:
        assert len(o.lines) == 1 and re.match(case.line, o.lines[0]), o.lines
